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
source(file.path("tests", "reference", "dataset_writer.R"))

out_dir <- file.path("python", "multilevel", "datasets", "data")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

## dataset name -> grouping factor used by the gls() fits
datasets <- list(Ovary = "Mare", Orthodont = "Subject", BodyWeight = "Rat")

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
    path <- write_dataset(name, d, out_dir)
    cat(sprintf("%-11s %6d rows (sorted by %s) -> %s\n", name, nrow(d),
                datasets[[name]], path))
}
flush_hex_log()
