# Fit one generalized linear mixed model with lme4::glmer or glmmTMB and write timings and estimates as JSON.
#
# Usage:
#   Rscript glmm_fit.R TOOL DATA.csv FORMULA FAMILY LINK OUT.json FACTORS
#
#   TOOL      lme4 or glmmTMB
#   DATA.csv  data with a header row
#   FORMULA   lme4 formula, e.g. "y ~ x1 + x2 + (1 | g)"
#   FAMILY    an R family function's name: binomial, poisson
#   LINK      its link: logit, probit, log, ...
#   OUT.json  where to write the results
#   FACTORS   comma-separated columns to turn into factors (the grouping
#             variables)
#
# The call timed is, with the package defaults,
#   lme4:    glmer(FORMULA, data = df, family = FAMILY(LINK), nAGQ = 1)   (glmerControl())
#   glmmTMB: glmmTMB(FORMULA, data = df, family = FAMILY(LINK))           (glmmTMBControl())
# Both include what the packages compute by default for the standard errors
# (glmer's finite-difference Hessian, glmmTMB's sdreport). Reading the file
# and making the factors are timed separately (load_seconds). Memory: VmRSS
# just before the call and the peak RSS during it, plus R's gc() "max used"
# (the measuring wrapper `measured` of gls_fit.R).
#
# Random-effect standard deviations are written as `sd`, keyed
# "group|term" with "(Intercept)" written "Intercept", as the Python side
# keys ours.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 7) {
  stop("usage: Rscript glmm_fit.R TOOL DATA.csv FORMULA FAMILY LINK OUT.json FACTORS")
}
tool <- match.arg(args[[1]], c("lme4", "glmmTMB"))
data_path <- args[[2]]
form <- as.formula(args[[3]])
fam <- get(args[[4]], mode = "function")(link = args[[5]])
out_path <- args[[6]]
factors <- strsplit(args[[7]], ",", fixed = TRUE)[[1]]

suppressPackageStartupMessages({
  library(jsonlite)
  library(tool, character.only = TRUE)
})

# `measured` and the helper that loads definitions by name (`take_definitions`)
# are gls_fit.R's; `measured` uses lmm_fit.R's /proc probes.
here <- commandArgs(FALSE)
script_dir <- dirname(normalizePath(sub("--file=", "", here[startsWith(here, "--file=")][[1]], fixed = TRUE)))
assigned_name <- function(e) if (is.call(e) && identical(e[[1]], as.name("<-"))) as.character(e[[2]]) else ""
gls_defs <- Filter(function(e) assigned_name(e) == "take_definitions",
                   as.list(parse(file.path(script_dir, "gls_fit.R"))))
if (length(gls_defs) != 1) stop("gls_fit.R no longer defines take_definitions")
eval(gls_defs[[1]], envir = globalenv())
take_definitions("lmm_fit.R", c("proc_status_kb", "reset_peak_rss"))
take_definitions("gls_fit.R", "measured")

# ---- load and factors (not timed as part of the fit) -----------------------
clock <- proc.time()[["elapsed"]]
dt <- data.table::fread(data_path, showProgress = FALSE)
for (col in factors) data.table::set(dt, j = col, value = factor(dt[[col]]))
df <- data.table::setDF(dt)
load_seconds <- proc.time()[["elapsed"]] - clock

# ---- fit ------------------------------------------------------------------
run <- if (tool == "lme4") {
  measured(glmer(form, data = df, family = fam, nAGQ = 1))
} else {
  measured(glmmTMB(form, data = df, family = fam))
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
    control = unclass(glmerControl())[c("optimizer", "boundary.tol", "tolPwrss", "calc.derivs")]
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
    r_version = R.version.string,
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
    column_sums = lapply(Filter(is.numeric, df), function(v) sum(as.numeric(v)))
  )
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
