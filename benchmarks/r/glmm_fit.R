# Fit one generalized linear mixed model with lme4::glmer or glmmTMB and write timings and estimates as JSON.
#
# Usage:
#   Rscript glmm_fit.R TOOL DATA.csv FORMULA FAMILY LINK OUT.json FACTORS [CONTROL [WARM_LIMIT]]
#
#   TOOL      lme4 or glmmTMB
#   DATA.csv  data with a header row
#   FORMULA   lme4 formula, e.g. "y ~ x1 + x2 + (1 | g)"
#   FAMILY    an R family function's name: binomial, poisson
#   LINK      its link: logit, probit, log, ...
#   OUT.json  where to write the results
#   FACTORS   comma-separated columns to turn into factors (the grouping
#             variables)
#   CONTROL   default (the package's defaults) or fast (the speed settings
#             each package documents, below)
#   WARM_LIMIT seconds (default Inf): a fit shorter than this is made a second
#             time in the same process and timed as warm_fit_seconds
#
# The call timed is
#   lme4:    glmer(FORMULA, data = df, family = FAMILY(LINK), nAGQ = 1, control = C)
#   glmmTMB: glmmTMB(FORMULA, data = df, family = FAMILY(LINK), control = C)
# with C the package's default control, or with CONTROL = fast
#   lme4:    glmerControl(optimizer = "nloptwrap", calc.derivs = FALSE)
#            (lme4's "performance tips" vignette: nloptwrap's BOBYQA is
#            faster than the default bobyqa/Nelder_Mead pair, and the
#            finite-difference derivative check after the fit is skipped;
#            nAGQ = 0, also named there, changes the estimates and is not used)
#   glmmTMB: glmmTMBControl(parallel = <all cores>) (its OpenMP evaluation of
#            the likelihood; the default is one thread)
# Both include what the packages compute by default for the standard errors
# (glmer's finite-difference Hessian, glmmTMB's sdreport). Reading the file
# and making the factors are timed separately (load_seconds). Memory: VmRSS
# just before the call and the peak RSS during it, plus R's gc() "max used"
# (`measured` of measure.R, which also writes down the BLAS R loaded).
#
# Random-effect standard deviations are written as `sd`, keyed
# "group|term" with "(Intercept)" written "Intercept", as the Python side
# keys ours.

args <- commandArgs(trailingOnly = TRUE)
if (!length(args) %in% 7:9) {
  stop("usage: Rscript glmm_fit.R TOOL DATA.csv FORMULA FAMILY LINK OUT.json FACTORS [CONTROL [WARM_LIMIT]]")
}
tool <- match.arg(args[[1]], c("lme4", "glmmTMB"))
data_path <- args[[2]]
form <- as.formula(args[[3]])
fam <- get(args[[4]], mode = "function")(link = args[[5]])
out_path <- args[[6]]
factors <- strsplit(args[[7]], ",", fixed = TRUE)[[1]]
control_kind <- match.arg(if (length(args) >= 8) args[[8]] else "default", c("default", "fast"))

suppressPackageStartupMessages({
  library(jsonlite)
  library(tool, character.only = TRUE)
})

here <- commandArgs(FALSE)
script_dir <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", here, value = TRUE)[[1]])))
source(file.path(script_dir, "measure.R"))  # measured, column_sums, seconds_arg
warm_limit <- if (length(args) == 9) seconds_arg(args[[9]], "WARM_LIMIT") else Inf

# ---- load and factors (not timed as part of the fit) -----------------------
clock <- proc.time()[["elapsed"]]
dt <- data.table::fread(data_path, showProgress = FALSE)
for (col in factors) data.table::set(dt, j = col, value = factor(dt[[col]]))
df <- data.table::setDF(dt)
load_seconds <- proc.time()[["elapsed"]] - clock

# ---- fit ------------------------------------------------------------------
control <- if (tool == "lme4") {
  if (control_kind == "fast") glmerControl(optimizer = "nloptwrap", calc.derivs = FALSE) else glmerControl()
} else {
  if (control_kind == "fast") glmmTMBControl(parallel = parallel::detectCores()) else glmmTMBControl()
}
run <- if (tool == "lme4") {
  measured(function() glmer(form, data = df, family = fam, nAGQ = 1, control = control), warm_limit)
} else {
  measured(function() glmmTMB(form, data = df, family = fam, control = control), warm_limit)
}
fit <- run$value

# ---- results --------------------------------------------------------------
sd_of <- function(vc) {
  out <- list()
  for (g in names(vc)) {
    s <- attr(vc[[g]], "stddev")
    for (term in names(s)) out[[paste0(g, "|", sub("^\\(Intercept\\)$", "Intercept", term))]] <- unname(s[[term]])
  }
  out
}
if (tool == "lme4") {
  conv <- fit@optinfo$conv$lme4$messages
  details <- list(
    params = as.list(fixef(fit)),
    bse = as.list(sqrt(diag(as.matrix(vcov(fit))))),
    theta = as.list(getME(fit, "theta")),
    sd = sd_of(VarCorr(fit)),
    feval = fit@optinfo$feval,
    optimizer = fit@optinfo$optimizer,
    conv_messages = if (is.null(conv)) list() else as.list(conv),
    converged = fit@optinfo$conv$opt == 0 && is.null(conv),
    control = unclass(control)[c("optimizer", "boundary.tol", "tolPwrss", "calc.derivs")]
  )
} else {
  evals <- fit$fit$evaluations
  details <- list(
    params = as.list(fixef(fit)$cond),
    bse = as.list(sqrt(diag(vcov(fit)$cond))),
    theta = as.list(fit$fit$par[names(fit$fit$par) == "theta"]),  # log standard deviations
    sd = sd_of(VarCorr(fit)$cond),
    feval = unname(evals[["function"]]),
    geval = unname(evals[["gradient"]]),
    optimizer = "nlminb",
    optimizer_message = fit$fit$message,
    pd_hessian = isTRUE(fit$sdr$pdHess),
    converged = fit$fit$convergence == 0 && isTRUE(fit$sdr$pdHess),
    parallel = fit$modelInfo$parallel
  )
}
out <- c(
  list(
    tool = tool,
    version = as.character(packageVersion(tool)),
    control_kind = control_kind,
    reader = "data.table::fread",
    formula = deparse(form, width.cutoff = 500L),
    family = fam$family,
    link = fam$link,
    nobs = nrow(df),
    nlevels = lapply(df[factors], nlevels),
    load_seconds = load_seconds
  ),
  run$figures,
  details,
  list(
    loglik = as.numeric(logLik(fit)),
    column_sums = column_sums(df)
  )
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
