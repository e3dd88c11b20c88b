# Fit one linear mixed model with lme4::lmer and write timings and estimates as JSON.
#
# Usage:
#   Rscript lmm_fit.R DATA.csv FORMULA REML OUT.json [FACTORS [CALC_DERIVS [WARM_LIMIT]]]
#
#   DATA.csv     data with a header row
#   FORMULA      lme4 formula, e.g. "y ~ x1 + (1 + x1 | g)"
#   REML         TRUE (REML) or FALSE (maximum likelihood)
#   OUT.json     where to write the results
#   FACTORS      optional comma-separated columns to turn into factors; by
#                default (or "") the grouping variables of the random-effects terms
#   CALC_DERIVS  TRUE (lme4's default) or FALSE: lmerControl(calc.derivs = ), the
#                finite-difference gradient and Hessian lme4 computes after the
#                optimizer to check convergence
#   WARM_LIMIT   seconds (default Inf): if the timed fit took less, the same model is
#                fitted once more in this process and that second fit timed as
#                warm_fit_seconds (R's start-up, package loading and first-call costs
#                left out)
#
# Only the lmer() call is timed; reading the file and converting the
# factors are timed separately (load_seconds). Memory: VmRSS just before
# lmer() and the peak RSS during lmer() (VmHWM after resetting it through
# /proc/self/clear_refs, where the kernel allows that), plus R's own
# gc() "max used" during the call. The BLAS and LAPACK that R loaded are
# written down (the caller chooses them through R_LD_LIBRARY_PATH).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
here <- commandArgs(FALSE)
script_dir <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", here, value = TRUE)[[1]])))
source(file.path(script_dir, "measure.R"))  # proc_status_kb, reset_peak_rss, measured, r_platform, ...

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 4) {
  stop("usage: Rscript lmm_fit.R DATA.csv FORMULA REML OUT.json [FACTORS [CALC_DERIVS [WARM_LIMIT]]]")
}
data_path <- args[[1]]
form <- as.formula(args[[2]])
reml <- as.logical(args[[3]])
out_path <- args[[4]]
calc_derivs <- if (length(args) >= 6) as.logical(args[[6]]) else TRUE
warm_limit <- if (length(args) >= 7) seconds_arg(args[[7]], "WARM_LIMIT") else Inf
if (is.na(reml) || is.na(calc_derivs)) stop("REML and CALC_DERIVS must be TRUE or FALSE")

# ---- load -----------------------------------------------------------------
t_load <- proc.time()[["elapsed"]]
if (requireNamespace("data.table", quietly = TRUE)) {
  df <- as.data.frame(data.table::fread(data_path, showProgress = FALSE))
  reader <- "data.table::fread"
} else {
  df <- read.csv(data_path)
  reader <- "read.csv"
}
factors <- if (length(args) >= 5 && nzchar(args[[5]])) {
  strsplit(args[[5]], ",", fixed = TRUE)[[1]]
} else {
  unique(unlist(lapply(findbars(form), function(b) all.vars(b[[3]]))))
}
for (f in factors) df[[f]] <- factor(df[[f]])
load_seconds <- proc.time()[["elapsed"]] - t_load

# ---- fit ------------------------------------------------------------------
control <- lmerControl(calc.derivs = calc_derivs)  # TRUE is lmer()'s default control
fit_model <- function() lmer(form, data = df, REML = reml, control = control)
run <- measured(fit_model, warm_limit)
fit <- run$value

# ---- results --------------------------------------------------------------
beta <- fixef(fit)
conv <- fit@optinfo$conv$lme4$messages  # NULL or empty when lme4's checks passed
derivs <- fit@optinfo$derivs  # NULL with calc.derivs = FALSE
out <- c(list(
  tool = "lme4",
  version = as.character(packageVersion("lme4")),
  calc_derivs = calc_derivs,
  reader = reader,
  formula = deparse(form, width.cutoff = 500L),
  reml = reml,
  nobs = nobs(fit),
  load_seconds = load_seconds,
  objective = if (reml) REMLcrit(fit) else deviance(fit),
  objective_kind = if (reml) "REMLcrit" else "deviance",
  loglik = as.numeric(logLik(fit)),
  theta = as.list(getME(fit, "theta")),
  fixef = as.list(beta),
  se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
  sigma = sigma(fit),
  feval = fit@optinfo$feval,
  optimizer = fit@optinfo$optimizer,
  optimizer_return_code = fit@optinfo$conv$opt,
  optimizer_message = fit@optinfo$message,
  conv_messages = if (is.null(conv)) list() else as.list(conv),
  converged = fit@optinfo$conv$opt == 0 && length(conv) == 0,
  derivative_check = !is.null(derivs),
  max_abs_gradient = if (is.null(derivs)) NA_real_ else max(abs(derivs$gradient)),
  column_sums = column_sums(df)
), run$figures)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
