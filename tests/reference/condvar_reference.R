## Full conditional covariance matrices of the random effects per level
## (lme4's ranef(fit, condVar = TRUE) "postVar" attribute), for linear and
## generalized linear mixed models with vector-valued terms.
##
## Run from the repository root:
##     Rscript tests/reference/condvar_reference.R      (about 5 s)
## It writes tests/reference/condvar.json for tests/test_condvar.py.  Doubles
## round-trip exactly (exact_json.R).
##
## The conditional covariance of b given the data (and theta, beta) is
##     C = sigma^2 Lambda (Lambda' Z' W Z Lambda + I)^-1 Lambda'
## (sigma = 1 and W the GLM working weights at the conditional modes for a
## GLMM; W = prior weights for an LMM).  lme4's postVar holds, per grouping
## factor, the blocks of C of one level and ONE term: for (Days || Subject),
## two terms on Subject, it is a list of two 1 x 1 x 18 arrays and C's
## covariances between the intercept and the slope of a subject, which are
## not 0, are not reported.  Here every level's whole block over all the
## factor's terms ("full") is computed from the formula above:
##   * LMM: with lme4's own factor L (exact: no iteration), checked against
##     postVar to 1e-10 on the blocks lme4 reports;
##   * GLMM: with the conditional modes of glmm_reimpl.R's PIRLS iterated to
##     convergence at lme4's (theta, beta) ("full"), and with lme4's L
##     ("full_lme4_L"); lme4's PIRLS stops early, so postVar agrees with the
##     exact blocks to about 1e-6 only (recorded under "verification").
##
## Models:
##   sleepstudy_reml         lmer(Reaction ~ Days + (Days | Subject), REML)
##   sleepstudy_uncorr_reml  lmer(Reaction ~ Days + (Days || Subject), REML)
##   cbpp_slope              glmer(cbind(incidence, size - incidence) ~ pn + (1 + pn | herd),
##                           binomial), pn = as.numeric(period) (1 to 4)
##   contraception_uncorr    glmer(use ~ age + urban + (u || district), binomial),
##                           u = as.numeric(urban == "Y")
## All four converge without warnings and are not singular.

suppressPackageStartupMessages({
    library(Matrix)
    library(lme4)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
source(file.path("tests", "reference", "glmm_reimpl.R"))
source(file.path("tests", "reference", "verification.R"))

out_path <- file.path("tests", "reference", "condvar.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")

sources <- list(sleepstudy = lme4::sleepstudy, cbpp = lme4::cbpp,
                Contraception = local({
                    e <- new.env()
                    utils::data("Contraception", package = "mlmRev", envir = e)
                    e$Contraception
                }))
for (name in names(sources)) {
    d <- read_dataset(name, data_dir)
    if (!same_values(d, sources[[name]]))
        stop(name, ": bundled data differ from the R package's copy")
    assign(name, d, envir = globalenv())
}
cbpp$pn <- as.numeric(cbpp$period)
Contraception$u <- as.numeric(Contraception$urban == "Y")

models <- list(
    sleepstudy_reml = list(kind = "lmm", dataset = "sleepstudy", reml = TRUE,
                           formula = "Reaction ~ Days + (Days | Subject)"),
    sleepstudy_uncorr_reml = list(kind = "lmm", dataset = "sleepstudy", reml = TRUE,
                                  formula = "Reaction ~ Days + (Days || Subject)"),
    cbpp_slope = list(kind = "glmm", dataset = "cbpp", family = "binomial",
                      formula = "cbind(incidence, size - incidence) ~ pn + (1 + pn | herd)",
                      data_rule = "pn = as.numeric(period): 1, 2, 3, 4"),
    contraception_uncorr = list(kind = "glmm", dataset = "Contraception", family = "binomial",
                                formula = "use ~ age + urban + (u || district)",
                                data_rule = "u = as.numeric(urban == 'Y'); use: 1 if 'Y'")
)

## The blocks of a list of level matrices as an array-like list for JSON.
as_levels <- function(blocks) lapply(blocks, function(m) unname(m))

fit_record <- function(key, m) {
    cat(sprintf("fitting %-24s %s\n", key, m$formula))
    f <- as.formula(m$formula, env = globalenv())
    warns <- character(0)
    fit <- withCallingHandlers(
        if (m$kind == "lmm") lmer(f, data = get(m$dataset), REML = m$reml)
        else glmer(f, data = get(m$dataset), family = get(m$family)),
        warning = function(w) {
            warns <<- c(warns, conditionMessage(w))
            invokeRestart("muffleWarning")
        })
    if (length(warns)) stop(key, ": lme4 warned: ", paste(unique(warns), collapse = "; "))
    if (isSingular(fit)) stop(key, ": singular fit")
    theta <- getME(fit, "theta")
    fe <- fixef(fit)
    s <- sigma(fit)
    Lam <- getME(fit, "Lambda")
    ## C with lme4's factor L: solve(L, ., system = "A") applies (Lambda'Z'WZ Lambda + I)^-1
    C_L <- (if (m$kind == "lmm") s^2 else 1) *
        as.matrix(Lam %*% solve(getME(fit, "L"), t(Lam), system = "A"))
    full_L <- level_blocks(fit, C_L)
    postvar <- postvar_blocks(fit)
    for (g in names(postvar)) {
        pv <- unlist(postvar[[g]])
        known <- !is.na(pv)
        check(key, paste0("postVar = blocks of C with lme4's L [", g, "]"),
              rel_diff(unlist(full_L[[g]])[known], pv[known]), 1e-10)
    }
    if (m$kind == "lmm") {
        full <- full_L
    } else {
        P <- glmm_pieces(fit)
        st <- pirls_u(P, unname(theta), unname(fe))
        C <- as.matrix(Lam %*% chol2inv(st$R) %*% t(Lam))
        full <- level_blocks(fit, C)
        for (g in names(full))
            check(key, paste0("lme4 (early-stopping PIRLS) ~ exact blocks [", g, "]"),
                  rel_diff(unlist(full_L[[g]]), unlist(full[[g]])), 1e-4)
    }
    re <- ranef(fit)
    groups <- lapply(names(full), function(g) {
        list(levels = I(rownames(re[[g]])), columns = I(colnames(re[[g]])),
             full = as_levels(full[[g]]), full_lme4_L = as_levels(full_L[[g]]),
             postvar = as_levels(postvar[[g]]))
    })
    names(groups) <- names(full)
    rec <- list(kind = m$kind, dataset = m$dataset, formula = m$formula,
                reml = if (m$kind == "lmm") m$reml else FALSE,
                family = if (m$kind == "glmm") m$family else "gaussian",
                data_rule = if (is.null(m$data_rule)) "" else m$data_rule,
                theta = I(unname(theta)), theta_names = I(names(theta)),
                fixef = list(names = I(names(fe)), values = I(unname(fe))),
                sigma = s, groups = groups)
    rec
}

records <- list()
for (key in names(models)) records[[key]] <- fit_record(key, models[[key]])

## (Days || Subject): the covariance between a subject's intercept and slope is not 0
cross <- vapply(records$sleepstudy_uncorr_reml$groups$Subject$full, function(m) m[1, 2], 0)
check("sleepstudy_uncorr_reml", "intercept-slope conditional covariances are all negative",
      as.numeric(max(cross) >= 0), 0, "boolean (1 = failed)")

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    lme4_version = as.character(packageDescription("lme4")$Version),
    matrix_version = as.character(packageDescription("Matrix")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "lmerControl() / glmerControl() defaults",
    models = records,
    verification = verification
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
