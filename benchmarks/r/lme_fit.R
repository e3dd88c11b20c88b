# Fit the longitudinal benchmark model with nlme::lme and write timing and estimates as JSON.
#
# Usage: Rscript lme_fit.R DATA.csv OUT.json
#
# Model: lme(y ~ x + t, random = ~ t | id, correlation = corAR1(form = ~ visit | id),
#            weights = varPower(form = ~ v)), REML. Only the lme() call is timed.

suppressPackageStartupMessages({
  library(nlme)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
data <- read.csv(args[[1]])
data$id <- factor(data$id)
load_seconds <- proc.time()[["elapsed"]] - t0
t1 <- proc.time()[["elapsed"]]
fit <- lme(y ~ x + t, random = ~ t | id, data = data, correlation = corAR1(form = ~ visit | id),
           weights = varPower(form = ~ v), method = "REML", control = lmeControl(returnObject = TRUE))
seconds <- proc.time()[["elapsed"]] - t1
ms <- fit$modelStruct
writeLines(toJSON(list(seconds = seconds, load_seconds = load_seconds, loglik = as.numeric(logLik(fit)),
                       beta = unname(fixef(fit)), corr = as.numeric(coef(ms$corStruct, unconstrained = FALSE)),
                       power = as.numeric(coef(ms$varStruct, unconstrained = FALSE))),
                  auto_unbox = TRUE, digits = NA), args[[2]])
