## Export the datasets used by the inference reference fits (inference_reference.R).
##
## Run from the repository root:
##     Rscript tests/reference/export_inference_datasets.R
##
## Writes python/multilevel/datasets/data/<name>.csv and <name>.json in the
## format of export_datasets.R (see PROVENANCE.md):
##   ham   lmerTest::ham, unchanged (648 rows): a consumer study of 4 hams with
##         factors Product, Information, Gender and a numeric Age.
##   Dyestuff2  lme4::Dyestuff2, unchanged (30 rows): simulated yields whose
##         batch variance is estimated as zero (a singular fit).

suppressPackageStartupMessages({
    library(lmerTest)
    library(lme4)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

out_dir <- file.path("python", "multilevel", "datasets", "data")
env <- new.env()
utils::data("ham", package = "lmerTest", envir = env)
path <- write_dataset("ham", env$ham, out_dir)
cat(sprintf("%-11s %6d rows -> %s\n", "ham", nrow(env$ham), path))
path <- write_dataset("Dyestuff2", lme4::Dyestuff2, out_dir)
cat(sprintf("%-11s %6d rows -> %s\n", "Dyestuff2", nrow(lme4::Dyestuff2), path))
flush_hex_log()
