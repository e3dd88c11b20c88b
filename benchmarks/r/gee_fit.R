# Fit one marginal model with geepack::geeglm and write timings and estimates as JSON.
#
# Usage:
#   Rscript gee_fit.R DATA.csv FORMULA FAMILY CORSTR OUT.json
#
#   DATA.csv  data with a header row and the columns `id` (cluster) and `t`
#             (the wave: position of the row in its cluster)
#   FORMULA   model formula, e.g. "y ~ x1 + x2 + t"
#   FAMILY    an R family function's name: binomial, poisson, gaussian, ...
#             (its canonical link)
#   CORSTR    geepack's corstr: independence, exchangeable, ar1, unstructured
#   OUT.json  where to write the results
#
# The call timed is
#   geeglm(FORMULA, family = FAMILY(), data = df, id = id, waves = t, corstr = CORSTR)
# with geese.control() defaults (epsilon 1e-4, maxit 25) and the robust
# ("san.se") standard errors. geepack needs the rows of a cluster to be
# contiguous, so the data are sorted by (id, t) first; reading the file and
# sorting are timed separately (load_seconds, sort_seconds) and are not part
# of fit_seconds. Memory: VmRSS just before geeglm() and the peak RSS during
# it (VmHWM after resetting it through /proc/self/clear_refs, where the kernel
# allows that), plus R's own gc() "max used" during the call.

suppressPackageStartupMessages({
  library(geepack)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 5) {
  stop("usage: Rscript gee_fit.R DATA.csv FORMULA FAMILY CORSTR OUT.json")
}
data_path <- args[[1]]
form <- as.formula(args[[2]])
fam <- get(args[[3]], mode = "function")()
corstr <- args[[4]]
out_path <- args[[5]]

# The /proc memory helpers (proc_status_kb, reset_peak_rss) are lmm_fit.R's:
# evaluate just those two definitions from it rather than keep a second copy.
this_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[[1]])
for (e in parse(file.path(dirname(normalizePath(this_file)), "lmm_fit.R"))) {
  if (is.call(e) && identical(e[[1]], as.name("<-")) &&
      as.character(e[[2]]) %in% c("proc_status_kb", "reset_peak_rss")) {
    eval(e)
  }
}
stopifnot(is.function(proc_status_kb), is.function(reset_peak_rss))

elapsed <- function() proc.time()[["elapsed"]]

# ---- load and sort (not timed as part of the fit) -------------------------
t0 <- elapsed()
dt <- data.table::fread(data_path, showProgress = FALSE)
load_seconds <- elapsed() - t0
for (col in c("id", "t")) if (!col %in% names(dt)) stop("the data have no column ", col)
t0 <- elapsed()
was_sorted <- !is.unsorted(dt$id) && !any(diff(dt$t)[diff(dt$id) == 0] <= 0)
data.table::setorderv(dt, c("id", "t"))
df <- as.data.frame(dt)
rm(dt)
sort_seconds <- elapsed() - t0

# ---- fit ------------------------------------------------------------------
notes <- character(0)
note_condition <- function(kind) {
  function(cond) {
    notes <<- c(notes, paste0(kind, ": ", trimws(conditionMessage(cond))))
    invokeRestart(if (kind == "warning") "muffleWarning" else "muffleMessage")
  }
}
invisible(gc(reset = TRUE))
rss_before_kb <- proc_status_kb("VmRSS")
peak_reset <- reset_peak_rss()
pt_fit <- proc.time()
fit <- withCallingHandlers(
  geeglm(form, family = fam, data = df, id = id, waves = t, corstr = corstr),
  warning = note_condition("warning"),
  message = note_condition("message")
)
pt_used <- proc.time() - pt_fit
peak_kb <- proc_status_kb("VmHWM")
gc_used <- gc()

# ---- results --------------------------------------------------------------
coefs <- summary(fit)$coefficients
numeric_cols <- names(df)[vapply(df, is.numeric, logical(1))]
out <- list(
  tool = "geepack",
  geepack_version = as.character(packageVersion("geepack")),
  r_version = R.version.string,
  reader = "data.table::fread",
  formula = deparse(form, width.cutoff = 500L),
  family = fam$family,
  link = fam$link,
  corstr = corstr,
  nobs = nrow(df),
  nclusters = length(fit$geese$clusz),
  was_sorted = was_sorted,
  load_seconds = load_seconds,
  sort_seconds = sort_seconds,
  fit_seconds = pt_used[["elapsed"]],
  fit_cpu_seconds = pt_used[["user.self"]] + pt_used[["sys.self"]],
  params = as.list(coef(fit)),
  bse = as.list(setNames(coefs[, "Std.err"], rownames(coefs))),
  alpha = as.list(fit$geese$alpha),
  phi = unname(fit$geese$gamma[[1]]),
  geese_error = fit$geese$error,
  converged = fit$geese$error == 0,
  control = fit$geese$control,
  messages = as.list(unique(notes)),
  rss_before_fit_kb = rss_before_kb,
  peak_rss_fit_kb = if (peak_reset) peak_kb else NA_real_,
  peak_reset = peak_reset,
  gc_max_used_mb = sum(gc_used[, ncol(gc_used)]),  # the "max used (Mb)" column
  column_sums = as.list(vapply(df[numeric_cols], function(v) sum(as.numeric(v)), numeric(1)))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
