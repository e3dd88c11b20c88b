# Fit one generalized least squares model with nlme::gls and write timings and estimates as JSON.
#
# Usage:
#   Rscript gls_fit.R DATA.csv FORMULA CORSTRUCT CORFORM METHOD OUT.json [FACTORS [WARM_LIMIT]]
#
#   DATA.csv   data with a header row
#   FORMULA    model formula, e.g. "y ~ t * trt"
#   CORSTRUCT  an nlme corStruct constructor: corAR1, corCompSymm, corCAR1, ...
#   CORFORM    its form, e.g. "~ t | subject" (time covariate | grouping)
#   METHOD     REML or ML
#   OUT.json   where to write the results
#   FACTORS    optional comma-separated columns to turn into factors (by
#              default the grouping variable of CORFORM)
#   WARM_LIMIT seconds (default Inf): a fit shorter than this is made a second
#              time in the same process and timed as warm_fit_seconds
#
# The call timed is
#   gls(FORMULA, data = df, correlation = CORSTRUCT(form = CORFORM), method = METHOD)
# with glsControl() defaults. Reading the file, making the factors and
# sorting the rows by (group, time) are timed separately (load_seconds,
# sort_seconds) and are not part of fit_seconds. Memory: VmRSS just before
# gls() and the peak RSS during it (VmHWM after resetting it through
# /proc/self/clear_refs, where the kernel allows that), plus R's own gc()
# "max used" during the call (`measured` of measure.R, which also writes down
# the BLAS and LAPACK that R loaded).

suppressPackageStartupMessages({
  library(nlme)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 6) {
  stop("usage: Rscript gls_fit.R DATA.csv FORMULA CORSTRUCT CORFORM METHOD OUT.json [FACTORS [WARM_LIMIT]]")
}
data_path <- args[[1]]
form <- as.formula(args[[2]])
cor_name <- args[[3]]
cor_form <- as.formula(args[[4]])
method <- match.arg(args[[5]], c("REML", "ML"))
out_path <- args[[6]]

here <- commandArgs(FALSE)
script_dir <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", here, value = TRUE)[[1]])))
source(file.path(script_dir, "measure.R"))  # measured, column_sums, seconds_arg
warm_limit <- if (length(args) >= 8) seconds_arg(args[[8]], "WARM_LIMIT") else Inf

# ---- load, factors, sort (not timed as part of the fit) -------------------
group_var <- all.vars(getGroupsFormula(cor_form))
time_var <- all.vars(getCovariateFormula(cor_form))
factors <- if (length(args) >= 7 && nzchar(args[[7]])) strsplit(args[[7]], ",", fixed = TRUE)[[1]] else group_var
clock <- proc.time()[["elapsed"]]
dt <- data.table::fread(data_path, showProgress = FALSE)
for (col in factors) data.table::set(dt, j = col, value = factor(dt[[col]]))
load_seconds <- proc.time()[["elapsed"]] - clock
clock <- proc.time()[["elapsed"]]
keys <- c(group_var, time_var)
was_sorted <- identical(do.call(order, unname(as.list(dt)[keys])), seq_len(nrow(dt)))
if (!was_sorted) data.table::setorderv(dt, keys)
df <- data.table::setDF(dt)
sort_seconds <- proc.time()[["elapsed"]] - clock

# ---- fit ------------------------------------------------------------------
correlation <- get(cor_name, mode = "function")(form = cor_form)
run <- measured(function() gls(form, data = df, correlation = correlation, method = method), warm_limit)
fit <- run$value

# ---- results --------------------------------------------------------------
out <- c(
  list(
    tool = "nlme",
    nlme_version = as.character(packageVersion("nlme")),
    reader = "data.table::fread",
    formula = deparse(form, width.cutoff = 500L),
    correlation = paste0(cor_name, "(form = ", deparse(cor_form), ")"),
    method = method,
    nobs = fit$dims$N,
    ngroups = nlevels(df[[group_var[[1]]]]),
    was_sorted = was_sorted,
    load_seconds = load_seconds,
    sort_seconds = sort_seconds
  ),
  run$figures,
  list(
    params = as.list(coef(fit)),
    bse = as.list(sqrt(diag(vcov(fit)))),
    corr_params = as.list(coef(fit$modelStruct$corStruct, unconstrained = FALSE)),
    sigma = fit$sigma,
    loglik = as.numeric(logLik(fit)),
    num_iter = fit$numIter,
    converged = TRUE,  # gls() stops with an error when its optimizer does not converge
    control = glsControl(),
    column_sums = column_sums(df)
  )
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
