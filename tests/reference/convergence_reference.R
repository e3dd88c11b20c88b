## Optima of linear mixed models to the last digits, for tests of convergence in the parameters.
##
## Run from the repository root:
##     Rscript tests/reference/convergence_reference.R
## It writes tests/reference/convergence.json and exports nlme's Oxboys to
## python/multilevel/datasets/data/ (CSV + schema, as export_datasets.R).
##
## lme4's own optimizer, like ours, stops on the objective, so its theta is
## only good to about 1e-5 on these random-slope models. Here the profiled
## deviance of lme4 (devFunOnly = TRUE) is minimized by nlminb with the
## tightest tolerances, then Newton steps with numDeriv's Richardson-
## extrapolated gradient and Hessian until the step is below 1e-10; the
## fields of the JSON are taken from the model at that theta (mkMerMod).
## nlme's lme estimates are stored beside them for information.

suppressPackageStartupMessages({
    library(lme4)
    library(nlme)
    library(numDeriv)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

Oxboys <- data.frame(lapply(as.list(nlme::Oxboys), identity), check.names = FALSE)
write_dataset("Oxboys", Oxboys, file.path("python", "multilevel", "datasets", "data"))
Orthodont <- data.frame(lapply(as.list(nlme::Orthodont), identity), check.names = FALSE)
sleepstudy <- lme4::sleepstudy

models <- list(
    orthodont_reml = list(dataset = "Orthodont", formula = "distance ~ age + (age | Subject)", reml = TRUE),
    orthodont_ml = list(dataset = "Orthodont", formula = "distance ~ age + (age | Subject)", reml = FALSE),
    oxboys_reml = list(dataset = "Oxboys", formula = "height ~ age + (age | Subject)", reml = TRUE),
    oxboys_ml = list(dataset = "Oxboys", formula = "height ~ age + (age | Subject)", reml = FALSE),
    sleepstudy_reml = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", reml = TRUE)
)

## theta minimizing devfun to the digits the deviance has
polished_theta <- function(devfun, start, lower) {
    opt <- nlminb(start, devfun, lower = lower,
                  control = list(rel.tol = 1e-15, x.tol = 1e-15, eval.max = 10000, iter.max = 10000))
    theta <- opt$par
    for (i in 1:20) {
        g <- numDeriv::grad(devfun, theta)
        h <- numDeriv::hessian(devfun, theta)
        step <- solve(h, g)
        theta <- theta - step
        if (max(abs(step)) < 1e-10) break
    }
    list(theta = theta, gradient = numDeriv::grad(devfun, theta), newton_iterations = i)
}

fit_model <- function(m) {
    data <- get(m$dataset)
    f <- as.formula(m$formula)
    lf <- lFormula(f, data = data, REML = m$reml)
    devfun <- do.call(mkLmerDevfun, lf)
    default <- lmer(f, data = data, REML = m$reml)
    best <- polished_theta(devfun, getME(default, "theta"), lf$reTrms$lower)
    ## A fresh deviance function evaluated once at the optimum: the one the optimizers ran leaves
    ## state from their last evaluations in its environment (its RX was not at best$theta).
    at_best <- do.call(mkLmerDevfun, lf)
    fval <- at_best(best$theta)
    mod <- mkMerMod(environment(at_best), opt = list(par = best$theta, fval = fval, conv = 0),
                    reTrms = lf$reTrms, fr = lf$fr)
    vc <- as.data.frame(VarCorr(mod))
    slope <- if (m$dataset == "sleepstudy") "Days" else "age"
    lme_fit <- lme(as.formula(sub(" \\+ \\(.*$", "", m$formula)), random = as.formula(paste("~", slope, "| Subject")),
                   data = data, method = if (m$reml) "REML" else "ML",
                   control = lmeControl(msTol = 1e-14, tolerance = 1e-12))
    lme_vc <- suppressWarnings(as.numeric(VarCorr(lme_fit)[, "StdDev"]))
    list(
        dataset = m$dataset, formula = m$formula, reml = m$reml,
        theta = best$theta, gradient_at_theta = best$gradient, newton_iterations = best$newton_iterations,
        objective = fval,
        lme4_default_theta = getME(default, "theta"), lme4_default_objective = devfun(getME(default, "theta")),
        beta = unname(fixef(mod)), beta_names = names(fixef(mod)),
        sd = vc$sdcor[is.na(vc$var2)], sd_names = paste(vc$grp, vc$var1, sep = ":")[is.na(vc$var2)],
        cor = vc$sdcor[!is.na(vc$var2) & vc$grp != "Residual"],
        sigma = sigma(mod),
        bse = unname(sqrt(diag(as.matrix(vcov(mod))))),
        loglik = as.numeric(logLik(mod)),
        nlme_sd = lme_vc, nlme_beta = unname(fixef(lme_fit)), nlme_loglik = as.numeric(logLik(lme_fit))
    )
}

result <- list(
    generated_by = "tests/reference/convergence_reference.R",
    r_version_string = R.version.string,
    lme4_version = as.character(packageVersion("lme4")),
    nlme_version = as.character(packageVersion("nlme")),
    numDeriv_version = as.character(packageVersion("numDeriv")),
    models = lapply(models, fit_model)
)
writeLines(to_json(result), file.path("tests", "reference", "convergence.json"))
flush_hex_log()
