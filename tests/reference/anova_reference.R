## Likelihood-ratio tables of nested mixed models with lme4's anova().
##
## Run from the repository root:
##     Rscript tests/reference/anova_reference.R
## It writes tests/reference/anova.json: per comparison, the formulas, REML
## flags and refit setting of the models (in the order given to anova), and
## lme4's table (rows ordered by npar, as lme4 orders them) with its columns
## npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq) (NA as null).

suppressPackageStartupMessages({
    library(lme4)
})
source(file.path("tests", "reference", "exact_json.R"))

out_path <- file.path("tests", "reference", "anova.json")
sleepstudy <- lme4::sleepstudy
cbpp <- lme4::cbpp
cbpp$p <- cbpp$incidence / cbpp$size

lmm <- function(formula, reml) list(family = "gaussian", formula = formula, reml = reml)
glm_binomial <- function(formula) list(family = "binomial", formula = formula, reml = FALSE)

comparisons <- list(
    sleep_fixed_refit = list(dataset = "sleepstudy", refit = TRUE, models = list(
        lmm("Reaction ~ 1 + (Days | Subject)", TRUE), lmm("Reaction ~ Days + (Days | Subject)", TRUE))),
    sleep_random_ml = list(dataset = "sleepstudy", refit = TRUE, models = list(
        lmm("Reaction ~ Days + (Days | Subject)", FALSE), lmm("Reaction ~ Days + (1 | Subject)", FALSE),
        lmm("Reaction ~ Days + (Days || Subject)", FALSE))),
    sleep_random_reml_norefit = list(dataset = "sleepstudy", refit = FALSE, models = list(
        lmm("Reaction ~ Days + (1 | Subject)", TRUE), lmm("Reaction ~ Days + (Days | Subject)", TRUE))),
    cbpp_period = list(dataset = "cbpp", refit = TRUE, models = list(
        glm_binomial("p ~ 1 + (1 | herd)"), glm_binomial("p ~ period + (1 | herd)")))
)

fit_model <- function(m, data) {
    if (m$family == "gaussian") return(lmer(as.formula(m$formula), data = data, REML = m$reml))
    glmer(as.formula(m$formula), data = data, family = binomial, weights = size)
}

records <- list()
for (key in names(comparisons)) {
    cmp <- comparisons[[key]]
    data <- get(cmp$dataset)
    fits <- lapply(cmp$models, fit_model, data = data)
    tab <- suppressMessages(do.call(anova, c(fits, list(refit = cmp$refit))))
    columns <- list()
    for (col in colnames(tab)) columns[[col]] <- as.numeric(tab[[col]])
    records[[key]] <- list(dataset = cmp$dataset, refit = cmp$refit, models = cmp$models,
                           rownames = rownames(tab),
                           table = columns)
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    lme4_version = as.character(packageDescription("lme4")$Version),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    comparisons = records
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
