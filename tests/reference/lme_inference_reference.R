## Inference after lme() fits with residual correlation and variance functions: clubSandwich's
## cluster-robust covariance and tests, and emmeans' Satterthwaite df.
##
## Run from the repository root:
##     Rscript tests/reference/lme_inference_reference.R
## It writes tests/reference/lme_inference.json. Per case (the cases of lme_cases.R named below):
##   * cr: for CR0, CR1 (clubSandwich's CR1, sqrt(J / (J - 1))) and CR2, vcovCR(fit, type) (p x p, by
##     column) and coef_test(fit, vcov, test = "Satterthwaite")'s df_Satt per coefficient; and the HTZ
##     Wald test of all coefficients but the intercept (Fstat, df_denom);
##   * satterthwaite_df: emmeans' mode = "appx-satterthwaite" df of each coefficient (its dffun on unit
##     contrasts). emmeans differences V by refitting with nudged parameters ("gradV.kludge") and uses
##     nlme's apVar (a finite-difference Hessian), so these are approximate: our tests compare to 2%.

suppressPackageStartupMessages({
    library(clubSandwich)
    library(emmeans)
})
source(file.path("tests", "reference", "lme_cases.R"))

keys <- c("ovary_ar1_reml", "orthodont_ident", "bodyweight_power", "bodyweight_car1_power", "bodyweight_ar1_gaps")
records <- list()
for (key in keys) {
    message("case ", key)
    case <- cases[[key]]
    fit <- fit_lme_case(case)
    p <- length(fixef(fit))
    cr <- list()
    for (type in c("CR0", "CR1", "CR2")) {
        V <- vcovCR(fit, type = type)
        ct <- coef_test(fit, vcov = V, test = "Satterthwaite")
        wt <- Wald_test(fit, constraints = constrain_zero(2:p), vcov = V, test = "HTZ")
        cr[[type]] <- list(vcov = as.numeric(as.matrix(V)), df = as.numeric(ct$df_Satt),
                           htz_f = as.numeric(wt$Fstat), htz_df = as.numeric(wt$df_denom))
    }
    rg <- ref_grid(fit, mode = "appx-satterthwaite")
    satt <- vapply(seq_len(p), function(i) {
        k <- numeric(p); k[i] <- 1
        as.numeric(rg@dffun(k, rg@dfargs))
    }, numeric(1))
    records[[key]] <- list(coef_names = names(fixef(fit)), cr = cr, satterthwaite_df = satt,
                           beta = unname(fixef(fit)))
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    nlme_version = as.character(packageVersion("nlme")),
    clubsandwich_version = as.character(packageVersion("clubSandwich")),
    emmeans_version = as.character(packageVersion("emmeans")),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    cases = records
)
writeLines(to_json(result), file.path("tests", "reference", "lme_inference.json"))
flush_hex_log()
