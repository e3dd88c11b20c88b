## Export the nlme datasets used by the gls() reference fits (gls_reference.R).
##
## Run from the repository root:
##     Rscript tests/reference/export_gls_datasets.R
##
## For every dataset this writes
##   python/multilevel/datasets/data/<name>.csv      the data
##   python/multilevel/datasets/data/<name>.json     column schema
## in the same format as tests/reference/export_datasets.R (see
## python/multilevel/datasets/PROVENANCE.md).
##
## Row order.  nlme::gls() sorts the data internally by the grouping factor
## of the correlation structure (order(<groups>), i.e. by the factor's level
## codes, ties kept in data order) before it builds the within-group
## correlation matrices, and it maps fitted values and residuals back to the
## original order afterwards.  residuals(fit, type = "normalized") does *not*
## undo that reordering correctly when the data are not already sorted (it
## applies the per-group whitening blocks, laid out in sorted order, to the
## residuals in the original order; see tests/reference/GLS_DEFINITIONS.md).
## The nlme copies of these datasets are not sorted by their grouping factor
## (the factors are ordered factors whose level order differs from the row
## order), so the rows are written here in exactly the order in which gls()
## fits them: stably sorted by the grouping factor's level codes.  On the
## exported data the internal sort is the identity, so every per-row output
## of gls() (fitted values, all residual types) refers to the rows as stored.

suppressPackageStartupMessages(library(nlme))
source(file.path("tests", "reference", "exact_json.R"))

out_dir <- file.path("python", "multilevel", "datasets", "data")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

## dataset name -> grouping factor used by the gls() fits
datasets <- list(Ovary = "Mare", Orthodont = "Subject", BodyWeight = "Rat")

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

## The rows in gls()'s fitting order, as a plain data.frame (the groupedData
## class and its attributes -- formula, labels, units -- are dropped).
gls_order_data <- function(name, group) {
    g <- get(name, envir = asNamespace("nlme"))
    d <- data.frame(lapply(as.list(g), identity), check.names = FALSE,
                    stringsAsFactors = FALSE)
    stopifnot(identical(names(d), names(g)), nrow(d) == nrow(g))
    ord <- order(d[[group]], seq_len(nrow(d)))  # stable sort by level code
    d <- d[ord, , drop = FALSE]
    rownames(d) <- NULL
    ## Sorting must be the identity the second time (what gls() will do).
    stopifnot(identical(order(d[[group]]), seq_len(nrow(d))))
    d
}

for (name in names(datasets)) {
    d <- gls_order_data(name, datasets[[name]])
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
    cat(sprintf("%-11s %6d rows (sorted by %s) -> %s\n", name, nrow(d),
                datasets[[name]], path))
}
flush_hex_log()
