## Export the datasets used by the GEE reference fits (gee_reference.R).
##
## Run from the repository root:
##     Rscript tests/reference/export_gee_datasets.R
##
## For every dataset this writes
##   python/multilevel/datasets/data/<name>.csv      the data
##   python/multilevel/datasets/data/<name>.json     column schema
## in exactly the format of export_datasets.R (see PROVENANCE.md there).
## Rows are in the order in which gee_reference.R hands them to geeglm().
##
##   ohio         geepack::ohio, unchanged (2148 rows).
##   epil         MASS::epil, unchanged (236 rows).
##   dietox       geepack::dietox, unchanged (861 rows; Feed has NAs).
##   respiratory  geepack::respiratory plus an integer column 'subject' =
##                100 * center + id, because 'id' restarts at 1 in the
##                second center (444 rows).
## cbpp (also used) is already exported by export_datasets.R.

suppressPackageStartupMessages({
    library(geepack)
    library(MASS)
})
source(file.path("tests", "reference", "exact_json.R"))

out_dir <- file.path("python", "multilevel", "datasets", "data")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

gee_datasets <- function() {
    env <- new.env()
    utils::data("ohio", "dietox", "respiratory", package = "geepack", envir = env)
    resp <- env$respiratory
    resp$subject <- 100L * as.integer(resp$center) + as.integer(resp$id)
    list(ohio = env$ohio,
         epil = MASS::epil,
         dietox = env$dietox,
         respiratory = resp)
}

column_type <- function(x) {
    if (is.ordered(x)) return("ordered")
    if (is.factor(x)) return("factor")
    if (is.integer(x)) return("integer")
    if (is.double(x)) return("numeric")
    stop("unsupported column type: ", paste(class(x), collapse = "/"))
}

csv_field <- function(x) {
    needs_quote <- grepl("[\",\n\r]", x) | x == "NA" | x == ""
    ifelse(needs_quote, paste0("\"", gsub("\"", "\"\"", x), "\""), x)
}

column_text <- function(x) {
    out <- switch(column_type(x),
        factor = , ordered = csv_field(as.character(x)),
        integer = as.character(x),
        numeric = format_exact(x))
    out[is.na(x)] <- "NA"
    out
}

write_dataset <- function(name, d) {
    d <- as.data.frame(d)
    rownames(d) <- NULL
    schema <- lapply(names(d), function(col) {
        x <- d[[col]]
        entry <- list(name = col, type = column_type(x))
        if (is.factor(x)) entry$levels <- I(levels(x))
        entry
    })
    cols <- lapply(d, column_text)
    lines <- c(paste(csv_field(names(d)), collapse = ","),
               do.call(paste, c(unname(cols), sep = ",")))
    path <- file.path(out_dir, paste0(name, ".csv"))
    con <- file(path, open = "wb")
    writeLines(lines, con, sep = "\n")
    close(con)

    ## Round trip: read back with R and compare to the original.
    back <- utils::read.csv(path, colClasses = "character", na.strings = "NA",
                            check.names = FALSE)
    stopifnot(identical(names(back), names(d)), nrow(back) == nrow(d))
    for (col in names(d)) {
        x <- d[[col]]
        y <- back[[col]]
        ok <- if (is.factor(x)) {
            identical(as.character(x), y)
        } else if (is.integer(x)) {
            identical(x, as.integer(y))
        } else {
            identical(x, as.double(y))
        }
        if (!ok) stop("round trip failed for ", name, "$", col)
    }
    writeLines(to_json(schema), file.path(out_dir, paste0(name, ".json")))
    cat(sprintf("%-12s %5d rows -> %s\n", name, nrow(d), path))
}

if (sys.nframe() == 0L) {
    ds <- gee_datasets()
    for (name in names(ds)) write_dataset(name, ds[[name]])
    flush_hex_log()
}
