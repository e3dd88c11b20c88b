## Export the datasets used by the GLMM reference fits (glmm_reference.R)
## that were not bundled yet.
##
## Run from the repository root:
##     Rscript tests/reference/export_glmm_datasets.R
##
## For every dataset this writes
##   python/multilevel/datasets/data/<name>.csv      the data
##   python/multilevel/datasets/data/<name>.json     column schema
## in exactly the format of export_datasets.R (see PROVENANCE.md there).
## glmer() does not reorder rows, so the rows are in the packages' own order,
## which is the order glmm_reference.R fits them in.
##
##   VerbAgg        lme4::VerbAgg, unchanged (7584 rows, 9 columns).
##   Contraception  mlmRev::Contraception, unchanged (1934 rows, 6 columns).
## cbpp (export_datasets.R) and epil (export_gee_datasets.R) are also used.

suppressPackageStartupMessages({
    library(lme4)
    library(mlmRev)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

out_dir <- file.path("python", "multilevel", "datasets", "data")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

glmm_datasets <- function() {
    env <- new.env()
    utils::data("VerbAgg", package = "lme4", envir = env)
    utils::data("Contraception", package = "mlmRev", envir = env)
    list(VerbAgg = env$VerbAgg, Contraception = env$Contraception)
}

if (sys.nframe() == 0L) {
    ds <- glmm_datasets()
    for (name in names(ds)) {
        path <- write_dataset(name, ds[[name]], out_dir)
        cat(sprintf("%-14s %5d rows -> %s\n", name, nrow(ds[[name]]), path))
    }
    flush_hex_log()
}
