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
source(file.path("tests", "reference", "dataset_writer.R"))

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

if (sys.nframe() == 0L) {
    ds <- gee_datasets()
    for (name in names(ds)) {
        path <- write_dataset(name, ds[[name]], out_dir)
        cat(sprintf("%-12s %5d rows -> %s\n", name, nrow(ds[[name]]), path))
    }
    flush_hex_log()
}
