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
source(file.path("tests", "reference", "dataset_writer.R"))

out_dir <- file.path("python", "multilevel", "datasets", "data")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

datasets <- c("sleepstudy", "Dyestuff", "Penicillin", "Pastes", "InstEval", "cbpp")
compressed <- c("InstEval")

for (name in datasets) {
    d <- get(name, envir = asNamespace("lme4"))
    path <- write_dataset(name, d, out_dir, compressed = name %in% compressed)
    cat(sprintf("%-11s %6d rows -> %s\n", name, nrow(d), path))
}
flush_hex_log()
