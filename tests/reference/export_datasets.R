## Export the classic lme4 datasets bundled with multilevel.datasets.
##
## Run from the repository root:
##     Rscript tests/reference/export_datasets.R
##
## For every dataset this writes
##   python/multilevel/datasets/data/<name>.csv      (InstEval: .csv.gz)
##   python/multilevel/datasets/data/<name>.json     column schema
## Factors are written by their labels; the schema records each column's type
## ("factor", "ordered", "integer" or "numeric") and, for factors, the levels
## in R's order.  Doubles are written with the shortest decimal representation
## that round-trips exactly (see exact_json.R).

suppressPackageStartupMessages(library(lme4))
source(file.path("tests", "reference", "exact_json.R"))

out_dir <- file.path("python", "multilevel", "datasets", "data")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

datasets <- c("sleepstudy", "Dyestuff", "Penicillin", "Pastes", "InstEval", "cbpp")
compressed <- c("InstEval")

column_type <- function(x) {
    if (is.ordered(x)) return("ordered")
    if (is.factor(x)) return("factor")
    if (is.integer(x)) return("integer")
    if (is.double(x)) return("numeric")
    stop("unsupported column type: ", paste(class(x), collapse = "/"))
}

csv_field <- function(x) {
    ## Quote a character field only when CSV requires it.
    needs_quote <- grepl("[\",\n\r]", x) | x == "NA" | x == ""
    x <- ifelse(needs_quote, paste0("\"", gsub("\"", "\"\"", x), "\""), x)
    x
}

column_text <- function(x) {
    type <- column_type(x)
    out <- switch(type,
        factor = , ordered = csv_field(as.character(x)),
        integer = as.character(x),
        numeric = format_exact(x))
    out[is.na(x)] <- "NA"
    out
}

for (name in datasets) {
    d <- get(name, envir = asNamespace("lme4"))
    d <- as.data.frame(d)
    schema <- lapply(names(d), function(col) {
        x <- d[[col]]
        entry <- list(name = col, type = column_type(x))
        if (is.factor(x)) entry$levels <- I(levels(x))
        entry
    })
    cols <- lapply(d, column_text)
    lines <- c(paste(csv_field(names(d)), collapse = ","),
               do.call(paste, c(unname(cols), sep = ",")))
    if (name %in% compressed) {
        path <- file.path(out_dir, paste0(name, ".csv.gz"))
        con <- gzfile(path, open = "wb", compression = 9)
    } else {
        path <- file.path(out_dir, paste0(name, ".csv"))
        con <- file(path, open = "wb")
    }
    writeLines(lines, con, sep = "\n")
    close(con)

    ## Round-trip check: read the file back with R and compare to the original.
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

    schema_path <- file.path(out_dir, paste0(name, ".json"))
    writeLines(to_json(schema), schema_path)
    cat(sprintf("%-11s %6d rows -> %s\n", name, nrow(d), path))
}
flush_hex_log()
