## Profile-likelihood confidence intervals of linear mixed models: lme4's
## confint(fit, method = "profile", oldNames = FALSE).
##
## Run from the repository root (after export_inference_datasets.R):
##     Rscript tests/reference/profile_reference.R
## It writes tests/reference/profile.json: per case the dataset, formula, REML
## flag and level, and lme4's interval table (row names in lme4's order:
## random-effect standard deviations and correlations, sigma, fixed effects;
## NA as null). lme4 profiles the ML deviance, refitting REML fits by ML;
## for glmer fits (Laplace) the deviance in the sd and the fixed effects.

suppressPackageStartupMessages(library(lme4))
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
data_dir <- file.path("python", "multilevel", "datasets", "data")

cases <- list(
    sleep_slope = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", reml = TRUE,
                       level = 0.95),
    sleep_slope_90 = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", reml = FALSE,
                          level = 0.9),
    penicillin_crossed = list(dataset = "Penicillin", formula = "diameter ~ 1 + (1 | plate) + (1 | sample)",
                              reml = TRUE, level = 0.95),
    dyestuff2_singular = list(dataset = "Dyestuff2", formula = "Yield ~ 1 + (1 | Batch)", reml = TRUE,
                              level = 0.95),
    cbpp_binomial = list(dataset = "cbpp", family = "binomial", level = 0.95, reml = FALSE,
                         formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
    epil_poisson = list(dataset = "epil", family = "poisson", level = 0.95, reml = FALSE,
                        formula = "y ~ lbase * trt + lage + V4 + (1 | subject)")
)

records <- list()
for (key in names(cases)) {
    case <- cases[[key]]
    data <- read_dataset(case$dataset, data_dir)
    fit <- if (is.null(case$family)) lmer(as.formula(case$formula), data = data, REML = case$reml) else
        glmer(as.formula(case$formula), data = data, family = case$family)
    ci <- suppressWarnings(confint(fit, method = "profile", level = case$level, oldNames = FALSE))
    records[[key]] <- c(case, list(rownames = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2])))
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    lme4_version = as.character(packageVersion("lme4")),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    cases = records
)
writeLines(to_json(result), file.path("tests", "reference", "profile.json"))
flush_hex_log()
