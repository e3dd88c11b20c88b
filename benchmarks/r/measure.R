# Helpers every fitting script here sources: the /proc memory probes, the
# timed call of a fit (with a warm second call) and what R runs on.
#
#   source(file.path(script_dir, "measure.R"))
#
# where `script_dir` is the calling script's folder (see `this_script_dir`
# below, which a script copies in one line because it cannot source this file
# before it knows where it is).

# A field of /proc/self/status in kB (VmRSS, VmHWM), NA where unreadable.
proc_status_kb <- function(field) {
  lines <- tryCatch(readLines("/proc/self/status"), error = function(e) character(0))
  hit <- grep(paste0("^", field, ":"), lines, value = TRUE)
  if (length(hit) == 0) return(NA_real_)
  as.numeric(strsplit(trimws(sub(paste0("^", field, ":"), "", hit[[1]])), "[[:space:]]+")[[1]][[1]])
}

# Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); FALSE where
# the kernel does not allow it, and the peak is then not recorded.
reset_peak_rss <- function() {
  ok <- tryCatch({
    con <- file("/proc/self/clear_refs", open = "w")
    on.exit(close(con))
    writeLines("5", con)
    TRUE
  }, error = function(e) FALSE, warning = function(w) FALSE)
  isTRUE(ok)
}

# Call `fit_model()` once: its value, and its wall and CPU seconds, the RSS
# before it, the peak RSS and R's gc() "max used" during it, and the warnings
# and messages it gave (collected, not printed). If it took less than
# `warm_limit` seconds it is called once more and that call timed as
# warm_fit_seconds: a second model fitted in the same session, without
# package loading and first-call costs (NA when not made).
measured <- function(fit_model, warm_limit = Inf) {
  said <- character(0)
  collect <- function(restart) function(cond) {
    said <<- c(said, paste0(class(cond)[[1]], ": ", trimws(conditionMessage(cond))))
    invokeRestart(restart)
  }
  invisible(gc(reset = TRUE))
  before_kb <- proc_status_kb("VmRSS")
  hwm_reset <- reset_peak_rss()
  clock <- proc.time()
  value <- withCallingHandlers(fit_model(), warning = collect("muffleWarning"), message = collect("muffleMessage"))
  spent <- proc.time() - clock
  hwm_kb <- proc_status_kb("VmHWM")
  gc_table <- gc()
  warm <- NA_real_
  if (spent[["elapsed"]] < warm_limit) {
    clock <- proc.time()
    invisible(suppressWarnings(suppressMessages(fit_model())))
    warm <- (proc.time() - clock)[["elapsed"]]
  }
  list(value = value, figures = c(list(
    fit_seconds = spent[["elapsed"]],
    fit_cpu_seconds = spent[["user.self"]] + spent[["sys.self"]],
    warm_fit_seconds = warm,
    rss_before_fit_kb = before_kb,
    peak_rss_fit_kb = if (hwm_reset) hwm_kb else NA_real_,
    peak_reset = hwm_reset,
    gc_max_used_mb = sum(gc_table[, ncol(gc_table)]),  # the "max used (Mb)" column
    messages = as.list(unique(said))
  ), r_platform()))
}

# R's version and the BLAS and LAPACK it loaded (the caller picks them through
# R_LD_LIBRARY_PATH and checks these).
r_platform <- function() {
  list(r_version = R.version.string, blas = unname(extSoftVersion()[["BLAS"]]), lapack = La_library(),
       openblas_num_threads = Sys.getenv("OPENBLAS_NUM_THREADS"))
}

# Sums of the numeric columns, which every tool's record carries to show all fitted the same rows.
column_sums <- function(df) lapply(Filter(is.numeric, df), function(v) sum(as.numeric(v)))

# A number of seconds given on the command line ("Inf" allowed), or stop.
seconds_arg <- function(text, what) {
  value <- suppressWarnings(as.numeric(text))
  if (is.na(value)) stop(what, " must be a number of seconds, not ", text)
  value
}
