# Time the inference after an lmer fit: lmerTest's Satterthwaite, pbkrtest's
# Kenward-Roger (through lmerTest), lme4's profile intervals and bootMer.
#
# Usage:
#   Rscript inference.R DATA.csv FORMULA OUT.json TASKS NSIM [FACTORS]
#
#   TASKS    comma-separated among satterthwaite, kenward-roger, profile, boot
#   NSIM     bootstrap replicates (boot)
#   FACTORS  comma-separated columns to make factors (default: the grouping variables)
#
# The lmer() fit is not timed. Each task is timed warm, after the fit, with
# system.time()'s elapsed seconds; its result (df, bounds) is written so the
# Python side can check it against ours.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[[1]])
form <- as.formula(args[[2]])
out_path <- args[[3]]
tasks <- strsplit(args[[4]], ",")[[1]]
nsim <- as.integer(args[[5]])
factors <- if (length(args) >= 6 && nzchar(args[[6]])) strsplit(args[[6]], ",")[[1]] else
  unique(unlist(lapply(findbars(form), function(b) all.vars(b[[3]]))))
for (f in factors) data[[f]] <- factor(data[[f]])

fit <- lme4::lmer(form, data = data, REML = TRUE)
out <- list()
time_it <- function(expr) {
  value <- NULL
  t <- system.time(value <- expr)[["elapsed"]]
  list(seconds = t, value = value)
}
for (task in tasks) {
  res <- tryCatch(switch(task,
    satterthwaite = time_it({
      m <- lmerTest::as_lmerModLmerTest(fit)
      unname(coef(summary(m, ddf = "Satterthwaite"))[, "df"])
    }),
    "kenward-roger" = time_it({
      m <- lmerTest::as_lmerModLmerTest(fit)
      unname(coef(summary(m, ddf = "Kenward-Roger"))[, "df"])
    }),
    profile = time_it(suppressMessages(unname(confint(fit, method = "profile", oldNames = FALSE)[, 1]))),
    boot = time_it({
      b <- lme4::bootMer(fit, function(x) c(getME(x, "theta"), sigma(x), fixef(x)), nsim = nsim, seed = 1)
      nrow(b$t)
    })
  ), error = function(e) list(seconds = NA, value = NULL, error = conditionMessage(e)))
  out[[task]] <- res
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null"), out_path)
