## GLMMs with an observation-level random effect (one level per row, for
## overdispersion), fitted with lme4::glmer().
##
## Run from the repository root:
##     Rscript tests/reference/glmm_obslevel_reference.R      (about 3 minutes: the
##     re-implementation's dense PIRLS on grouseticks' 584 random effects)
## It exports lme4's grouseticks to python/multilevel/datasets/data/ (CSV +
## schema, as export_datasets.R) and writes tests/reference/glmm_obslevel.json
## for tests/test_glmm_obslevel.py.  Doubles round-trip exactly (exact_json.R).
##
## glmer() accepts such terms: glFormula() checks the number of random effects
## per term with allow.n = TRUE (as many as rows is allowed, more is not),
## where lmer() refuses as many as rows (they would be confounded with the
## residual variance).
##
## Models:
##   cbpp_obs     cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs),
##                binomial, obs = 1:56 (one level per row)
##   grouseticks  TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
##                poisson; INDEX has one level per row (403).  cHEIGHT is lme4's
##                centred HEIGHT (HEIGHT - mean(HEIGHT)): with the raw HEIGHT of
##                lme4's help-page example glmer stops with "failed to converge
##                (max|grad| = 0.0028)" and "nearly unidentifiable" warnings;
##                centred, it converges cleanly.  The raw-HEIGHT fit is recorded
##                under "grouseticks_raw_height" for information.
##
## For each model the JSON has lme4's estimates and standard errors, logLik,
## deviance, the objective (-2 logLik) and, at fixed (theta, beta) points,
## the objective evaluated exactly by glmm_reimpl.R (PIRLS iterated to
## convergence) and by lme4's own deviance function at a tight PIRLS
## tolerance, which must agree to 1e-9; and the exact optimum (Newton steps on
## that objective from lme4's estimates) with its Hessian standard errors.

suppressPackageStartupMessages({
    library(Matrix)
    library(lme4)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
source(file.path("tests", "reference", "glmm_reimpl.R"))
source(file.path("tests", "reference", "verification.R"))

out_path <- file.path("tests", "reference", "glmm_obslevel.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")

## ---------------------------------------------------------------------------
## Data: grouseticks exported unchanged (glmer does not reorder rows), then
## everything read back from the bundled CSV files.
## ---------------------------------------------------------------------------
invisible(write_dataset("grouseticks", lme4::grouseticks, data_dir))
sources <- list(cbpp = lme4::cbpp, grouseticks = lme4::grouseticks)
for (name in names(sources)) {
    d <- read_dataset(name, data_dir)
    if (!same_values(d, sources[[name]]))
        stop(name, ": bundled data differ from lme4's copy")
    assign(name, d, envir = globalenv())
}
check("grouseticks", "cHEIGHT = HEIGHT - mean(HEIGHT)",
      abs_diff(grouseticks$cHEIGHT, grouseticks$HEIGHT - mean(grouseticks$HEIGHT)), 1e-12, "absolute")
cbpp$obs <- factor(seq_len(nrow(cbpp)))

models <- list(
    cbpp_obs = list(
        dataset = "cbpp", family = "binomial",
        formula = "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)",
        response = "proportion incidence / size with binomial size (prior weight) size",
        data_rule = "obs = 1:nrow(cbpp), one level per row"),
    grouseticks = list(
        dataset = "grouseticks", family = "poisson",
        formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        response = "count TICKS",
        data_rule = "INDEX has one level per row; cHEIGHT = HEIGHT - mean(HEIGHT)")
)

fit_glmer <- function(m) {
    warns <- character(0)
    fit <- withCallingHandlers(
        glmer(as.formula(m$formula, env = globalenv()), data = get(m$dataset),
              family = get(m$family)),
        warning = function(w) {
            warns <<- c(warns, conditionMessage(w))
            invokeRestart("muffleWarning")
        })
    list(fit = fit, warnings = unique(warns))
}

fit_record <- function(key, m) {
    cat(sprintf("fitting %-12s %s\n", key, m$formula))
    t0 <- proc.time()[["elapsed"]]
    fw <- fit_glmer(m)
    fit <- fw$fit
    theta <- getME(fit, "theta")
    ntheta <- length(theta)
    lower <- getME(fit, "lower")
    fe <- fixef(fit)
    par_hat <- unname(c(theta, fe))
    ll <- logLik(fit)
    V <- as.matrix(vcov(fit)); dimnames(V) <- NULL
    fval <- fit@devcomp$cmp[["dev"]]
    P <- glmm_pieces(fit)
    N <- length(P$y)
    check(key, "logLik = -objective / 2", rel_diff(-2 * c(ll), fval), 0)
    check(key, "an observation-level term: one level per row",
          abs(max(vapply(fit@flist, nlevels, 1L)) - N), 0, "absolute")
    devres <- P$fam$dev.resids(P$y, fitted(fit), P$wt)
    sat_const <- fit@resp$aic() - sum(devres)

    ## objective at fixed parameters: exact (glmm_reimpl.R) and lme4's devfun
    devfun_tight <- suppressWarnings(glmer(as.formula(m$formula, env = globalenv()),
                                           data = get(m$dataset), family = get(m$family),
                                           devFunOnly = TRUE))
    environment(devfun_tight)$tolPwrss <- 1e-14
    f_exact <- exact_objective_fun(P, ntheta, 1L)
    diag_theta <- lower == 0
    se_hat <- sqrt(diag(V))
    points <- list(
        list(label = "lme4 estimates", par = par_hat),
        list(label = "theta = 1.5 theta-hat + 0.1, beta = beta-hat + 0.5 SE",
             par = c(ifelse(diag_theta, 1.5 * theta + 0.1, 1.5 * theta), unname(fe) + 0.5 * se_hat)),
        list(label = "theta = 0.5 theta-hat, beta = beta-hat - 0.3 SE",
             par = c(0.5 * theta, unname(fe) - 0.3 * se_hat))
    )
    checks <- lapply(points, function(pt) {
        x <- unname(pt$par)
        v_exact <- f_exact(x)
        v_tight <- devfun_tight(x)
        check(key, paste0("tight-tolerance lme4 devfun = exact objective [", pt$label, "]"),
              rel_diff(v_tight, v_exact), 1e-9)
        list(label = pt$label, theta = I(x[seq_len(ntheta)]), beta = I(x[-seq_len(ntheta)]),
             objective = v_exact, lme4_devfun_tight = v_tight)
    })

    ## exact optimum: Newton steps on the exactly evaluated objective
    pol <- newton_polish(f_exact, par_hat, maxit = 8L, refresh_hessian = TRUE)
    Hx <- lme4:::deriv12(f_exact, pol$par, delta = 1e-4, fx = pol$objective)$Hessian
    Vx <- vcov_from_hessian(Hx, ntheta)
    check(key, "exact optimum: scaled gradient ~ 0", max(abs(pol$scaled_gradient)), 1e-5, "absolute")
    check(key, "exact optimum objective <= exact objective at lme4's estimates",
          max(0, pol$objective - checks[[1]]$objective), 1e-9, "absolute")
    exact_opt <- list(
        theta = I(pol$par[seq_len(ntheta)]), beta = I(pol$par[-seq_len(ntheta)]),
        objective = pol$objective, loglik = -pol$objective / 2,
        newton_iterations = pol$iterations, scaled_gradient = I(pol$scaled_gradient),
        vcov = Vx, fixef_se = I(sqrt(diag(Vx))))

    rec <- list(
        dataset = m$dataset, formula = m$formula, family = P$fam$family, link = P$fam$link,
        nagq = 1L, weights = NULL, offset = NULL,
        response = m$response, data_rule = m$data_rule,
        nobs = as.integer(N),
        ngroups = as.list(vapply(ngrps(fit), as.integer, integer(1))),
        theta = I(unname(theta)), theta_names = I(names(theta)),
        fixef = list(names = I(names(fe)), values = I(unname(fe))),
        fixef_se = I(unname(se_hat)), vcov = V,
        objective = fval, loglik = c(ll), loglik_df = as.integer(attr(ll, "df")),
        deviance = deviance(fit), aic = AIC(fit), bic = BIC(fit),
        saturated_constant = sat_const,
        convergence_messages = I(as.character(unlist(fit@optinfo$conv$lme4$messages))),
        warnings = I(fw$warnings),
        singular = isSingular(fit),
        objective_checks = checks,
        exact_optimum = exact_opt)
    rec["weights"] <- list(NULL)  # keep explicit nulls (the layout of glmm.json's models)
    rec["offset"] <- list(NULL)
    cat(sprintf("    %.1f s; objective %.12g, exact optimum %.12g\n",
                proc.time()[["elapsed"]] - t0, fval, pol$objective))
    rec
}

records <- list()
for (key in names(models)) {
    records[[key]] <- fit_record(key, models[[key]])
    if (length(records[[key]]$warnings))
        stop(key, ": glmer warned: ", paste(records[[key]]$warnings, collapse = "; "))
}

## For information: lme4's help-page model with the raw HEIGHT.
raw <- fit_glmer(list(dataset = "grouseticks", family = "poisson",
                      formula = "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"))
raw_fe <- fixef(raw$fit)
check("grouseticks_raw_height", "same slope as the centred fit",
      abs(raw_fe[["HEIGHT"]] - records$grouseticks$fixef$values[4]) / records$grouseticks$fixef_se[4], 0.01)
raw_record <- list(
    formula = "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
    theta = I(unname(getME(raw$fit, "theta"))),
    fixef = list(names = I(names(raw_fe)), values = I(unname(raw_fe))),
    loglik = c(logLik(raw$fit)),
    warnings = I(raw$warnings))

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    lme4_version = as.character(packageDescription("lme4")$Version),
    matrix_version = as.character(packageDescription("Matrix")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "glmerControl() defaults",
    models = records,
    grouseticks_raw_height = raw_record,
    verification = verification
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
