# Fit one marginal model with geepack::geeglm and write timings and estimates as JSON.
#
# Usage:
#   Rscript gee_fit.R DATA.csv FORMULA FAMILY CORSTR OUT.json [WARM_LIMIT]
#
#   DATA.csv  data with a header row and the columns `id` (cluster) and `t`
#             (the wave: position of the row in its cluster)
#   FORMULA   model formula, e.g. "y ~ x1 + x2 + t"
#   FAMILY    an R family function's name: binomial, poisson, gaussian, ...
#             (its canonical link)
#   CORSTR    geepack's corstr: independence, exchangeable, ar1, unstructured
#   OUT.json  where to write the results
#   WARM_LIMIT seconds (default Inf): a fit shorter than this is made a second
#             time in the same process and timed as warm_fit_seconds
#
# The call timed is
#   geeglm(FORMULA, family = FAMILY(), data = df, id = id, waves = t, corstr = CORSTR)
# with geese.control() defaults (epsilon 1e-4, maxit 25) and the robust
# ("san.se") standard errors. geepack needs the rows of a cluster to be
# contiguous, so the data are sorted by (id, t) first; reading the file and
# sorting are timed separately (load_seconds, sort_seconds) and are not part
# of fit_seconds. Memory: VmRSS just before geeglm() and the peak RSS during
# it (VmHWM after resetting it through /proc/self/clear_refs, where the kernel
# allows that), plus R's own gc() "max used" during the call (`measured` of
# measure.R, which also writes down the BLAS and LAPACK that R loaded).

suppressPackageStartupMessages({
  library(geepack)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (!length(args) %in% 5:6) {
  stop("usage: Rscript gee_fit.R DATA.csv FORMULA FAMILY CORSTR OUT.json [WARM_LIMIT]")
}
data_path <- args[[1]]
form <- as.formula(args[[2]])
fam <- get(args[[3]], mode = "function")()
corstr <- args[[4]]
out_path <- args[[5]]

here <- commandArgs(FALSE)
script_dir <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", here, value = TRUE)[[1]])))
source(file.path(script_dir, "measure.R"))  # measured, column_sums, seconds_arg
warm_limit <- if (length(args) == 6) seconds_arg(args[[6]], "WARM_LIMIT") else Inf

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
run <- measured(function() geeglm(form, family = fam, data = df, id = id, waves = t, corstr = corstr),
                warm_limit)
fit <- run$value

# ---- results --------------------------------------------------------------
coefs <- summary(fit)$coefficients
out <- c(list(
  tool = "geepack",
  geepack_version = as.character(packageVersion("geepack")),
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
  params = as.list(coef(fit)),
  bse = as.list(setNames(coefs[, "Std.err"], rownames(coefs))),
  alpha = as.list(fit$geese$alpha),
  phi = unname(fit$geese$gamma[[1]]),
  geese_error = fit$geese$error,
  converged = fit$geese$error == 0,
  control = fit$geese$control,
  column_sums = column_sums(df)
), run$figures)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
