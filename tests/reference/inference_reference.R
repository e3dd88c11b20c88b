## Denominator degrees of freedom and F tests of linear mixed models:
## lmerTest's Satterthwaite and (through pbkrtest) Kenward-Roger.
##
## Run from the repository root (after export_inference_datasets.R):
##     Rscript tests/reference/inference_reference.R
## It writes tests/reference/inference.json. Per case: the dataset, formula
## and REML flag; per coefficient (in lme4's column order) the estimate and,
## per method, the standard error, df, t value and p-value (contest1D); per
## method and anova type the F table of every model term (rows in lmerTest's
## order, columns Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)); and F tests
## of given contrast matrices (contestMD).
## The ham response Informed.liking is renamed liking (formula-friendly).

suppressPackageStartupMessages({
    library(lmerTest)
    library(pbkrtest)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
data_dir <- file.path("python", "multilevel", "datasets", "data")

ham <- read_dataset("ham", data_dir)
names(ham)[names(ham) == "Informed.liking"] <- "liking"
datasets <- list(sleepstudy = read_dataset("sleepstudy", data_dir), ham = ham,
                 Penicillin = read_dataset("Penicillin", data_dir))

cases <- list(
    sleep_reml = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", reml = TRUE),
    sleep_ml = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", reml = FALSE),
    ham_factorial = list(dataset = "ham", reml = TRUE,
        formula = "liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product)",
        contrasts = list(products = rbind(c(0, 1, -1, 0, 0, 0, 0, 0), c(0, 0, 1, -1, 0, 0, 0, 0)),
                         one_row = rbind(c(0, 0, 0, 0, 1, 0, 0, 0)))),
    ham_numeric = list(dataset = "ham", reml = TRUE,
        formula = "liking ~ Product + Information * Age + Gender + (1 | Consumer)"),
    penicillin = list(dataset = "Penicillin", formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", reml = TRUE)
)

columns_of <- function(tab) {
    out <- list()
    for (col in colnames(tab)) out[[col]] <- as.numeric(tab[[col]])
    out
}

records <- list()
for (key in names(cases)) {
    case <- cases[[key]]
    fit <- lmer(as.formula(case$formula), data = datasets[[case$dataset]], REML = case$reml)
    methods <- if (case$reml) c("Satterthwaite", "Kenward-Roger") else "Satterthwaite"
    p <- length(fixef(fit))
    per_method <- list()
    for (m in methods) {
        rows <- lapply(seq_len(p), function(j) {
            L <- numeric(p); L[j] <- 1
            contest1D(fit, L, ddf = m)
        })
        tab <- do.call(rbind, rows)
        anovas <- list()
        for (type in c(1, 3)) {
            a <- anova(fit, type = type, ddf = m)
            anovas[[paste0("type", type)]] <- list(terms = rownames(a), table = columns_of(a))
        }
        tests <- list()
        for (nm in names(case$contrasts)) tests[[nm]] <- columns_of(contestMD(fit, case$contrasts[[nm]], ddf = m))
        per_method[[m]] <- list(coefficients = columns_of(tab), anova = anovas, contrast_tests = tests)
    }
    records[[key]] <- list(
        dataset = case$dataset, formula = case$formula, reml = case$reml,
        coef_names = names(fixef(fit)), estimate = unname(fixef(fit)),
        theta = unname(getME(fit, "theta")), sigma = sigma(fit),
        contrasts = lapply(case$contrasts, function(L) lapply(seq_len(nrow(L)), function(i) L[i, ])),
        methods = per_method)
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    lme4_version = as.character(packageVersion("lme4")),
    lmerTest_version = as.character(packageVersion("lmerTest")),
    pbkrtest_version = as.character(packageVersion("pbkrtest")),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    cases = records
)
writeLines(to_json(result), file.path("tests", "reference", "inference.json"))
flush_hex_log()
