## Cluster-robust covariance of linear mixed models: clubSandwich's vcovCR
## (CR0, CR1, CR2) for lmer fits, coef_test's Satterthwaite df and the HTZ
## Wald test of a contrast matrix.
##
## Run from the repository root (after export_inference_datasets.R):
##     Rscript tests/reference/cluster_robust_reference.R
## It writes tests/reference/cluster_robust.json: per case the dataset,
## formula, REML flag, theta (lme4's, for tests at fixed parameters), the
## cluster variable, per type the covariance matrix (rows of p values), the
## coef_test table (SE, df_Satt, p_Satt) and, where given, Wald_test HTZ
## (Fstat, delta, df_num, df_denom, p_val).

suppressPackageStartupMessages({
    library(lme4)
    library(clubSandwich)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
data_dir <- file.path("python", "multilevel", "datasets", "data")

ham <- read_dataset("ham", data_dir)
names(ham)[names(ham) == "Informed.liking"] <- "liking"
datasets <- list(sleepstudy = read_dataset("sleepstudy", data_dir), ham = ham)

cases <- list(
    sleep_slope = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", reml = TRUE,
                       cluster = "Subject"),
    ham_nested = list(dataset = "ham", reml = TRUE, cluster = "Consumer",
        formula = "liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product)",
        constraint = rbind(c(0, 1, 0, 0, 0, 0, 0, 0), c(0, 0, 1, 0, 0, 0, 0, 0), c(0, 0, 0, 1, 0, 0, 0, 0))),
    ham_ml = list(dataset = "ham", reml = FALSE, cluster = "Consumer",
        formula = "liking ~ Product + Information + Age + (1 | Consumer)")
)

records <- list()
for (key in names(cases)) {
    case <- cases[[key]]
    data <- datasets[[case$dataset]]
    fit <- lmer(as.formula(case$formula), data = data, REML = case$reml)
    types <- list()
    for (type in c("CR0", "CR1", "CR2")) {
        v <- vcovCR(fit, type = type)
        ct <- coef_test(fit, vcov = v, test = "Satterthwaite")
        entry <- list(vcov = lapply(seq_len(nrow(v)), function(i) unname(as.numeric(v[i, ]))),
                      se = unname(ct$SE), df = unname(ct$df_Satt), p = unname(ct$p_Satt))
        if (!is.null(case$constraint)) {
            w <- Wald_test(fit, constraints = case$constraint, vcov = v, test = "HTZ")
            entry$htz <- list(Fstat = w$Fstat, delta = w$delta, df_num = w$df_num, df_denom = w$df_denom,
                              p_val = w$p_val)
        }
        types[[type]] <- entry
    }
    records[[key]] <- list(dataset = case$dataset, formula = case$formula, reml = case$reml,
                           cluster = case$cluster, theta = unname(getME(fit, "theta")),
                           constraint = if (is.null(case$constraint)) NULL else
                               lapply(seq_len(nrow(case$constraint)), function(i) case$constraint[i, ]),
                           types = types)
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    lme4_version = as.character(packageVersion("lme4")),
    clubSandwich_version = as.character(packageVersion("clubSandwich")),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    cases = records
)
writeLines(to_json(result), file.path("tests", "reference", "cluster_robust.json"))
flush_hex_log()
