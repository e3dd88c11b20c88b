## Reference GLMM fits with the non-canonical links glmm offers: binomial
## probit and cloglog (Laplace and adaptive Gauss-Hermite), poisson sqrt and
## identity, with lme4::glmer().
##
## Run from the repository root:
##     Rscript tests/reference/glmm_links_reference.R        (about 30 s)
## It writes tests/reference/glmm_links.json.  Doubles are written so that
## they round-trip exactly (see exact_json.R).  The layout follows glmm.json
## (GLMM_DEFINITIONS.md section 11), restricted to what these tests need.
##
## The data are read back from the bundled CSV files and checked against the
## R packages' copies.  For every model the script records
##   * lme4's fit with glmerControl() defaults,
##   * "objective_checks": the objective at three fixed (theta, beta) points
##     from the plain-R re-implementation in glmm_reimpl.R (PIRLS iterated to
##     convergence; it takes linkinv, mu.eta and variance from R's family
##     object), cross-checked against lme4's deviance function with a tight
##     PIRLS tolerance (1e-9), with the conditional modes b = Lambda u at each
##     point (all levels) and their conditional variances,
##   * "exact_optimum": the optimum of that exactly evaluated objective (Newton
##     steps from lme4's estimates), its log-likelihood (with the saturated
##     constant), Hessian standard errors and modes,
##   * "wrong_probit_derivative" (probit Laplace fits only): how much the
##     Laplace objective at lme4's estimates moves when PIRLS uses a wrong
##     mu.eta for the probit link, i.e. how large the signal a wrong link
##     derivative in the C++ PIRLS would produce in these fixtures.
## For non-canonical links PIRLS is Fisher scoring: the Laplace term uses the
## expected weights wt mu.eta^2 / V(mu) at the mode, as lme4 (glmmTMB, with the
## observed information, gives a different approximation and is not used).

suppressPackageStartupMessages({
    library(Matrix)
    library(lme4)
    library(jsonlite)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
source(file.path("tests", "reference", "glmm_reimpl.R"))

out_path <- file.path("tests", "reference", "glmm_links.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")

sources <- list(cbpp = lme4::cbpp, epil = MASS::epil,
                dietox = local({
                    e <- new.env()
                    utils::data("dietox", package = "geepack", envir = e)
                    e$dietox
                }))
for (name in names(sources)) {
    d <- read_dataset(name, data_dir)
    if (!same_values(d, sources[[name]]))
        stop(name, ": bundled data differ from the R package's copy")
    assign(name, d, envir = globalenv())
}

## ---------------------------------------------------------------------------
## Models.  response: how the Python tests build the response (a rule in
## Python syntax over the columns, and the binomial trials as weights).
## ---------------------------------------------------------------------------
spec <- function(dataset, formula, family, nagq = 1L, response_rule, weights_rule = NULL) {
    list(dataset = dataset, formula = formula, family = family, nagq = as.integer(nagq),
         response_rule = response_rule, weights_rule = weights_rule)
}
cbpp_f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
epil_f <- "y ~ lbase + trt + lage + V4 + (1 | subject)"
dietox_f <- "round(Weight) ~ Time + Cu + (1 | Pig)"

models <- list(
    cbpp_probit_laplace = spec("cbpp", cbpp_f, quote(binomial("probit")), 1L,
                               "incidence / size", "size"),
    cbpp_probit_agq9 = spec("cbpp", cbpp_f, quote(binomial("probit")), 9L,
                            "incidence / size", "size"),
    cbpp_cloglog_laplace = spec("cbpp", cbpp_f, quote(binomial("cloglog")), 1L,
                                "incidence / size", "size"),
    cbpp_cloglog_agq9 = spec("cbpp", cbpp_f, quote(binomial("cloglog")), 9L,
                             "incidence / size", "size"),
    epil_poisson_sqrt = spec("epil", epil_f, quote(poisson("sqrt")), 1L, "y"),
    dietox_poisson_identity = spec("dietox", dietox_f, quote(poisson("identity")), 1L,
                                   "np.round(Weight)")
)

model_call <- function(m, family = m$family) {
    call("glmer", formula = as.formula(m$formula, env = globalenv()),
         data = as.name(m$dataset), family = family, nAGQ = m$nagq)
}

## ---------------------------------------------------------------------------
## Verification bookkeeping and helpers (as glmm_reference.R)
## ---------------------------------------------------------------------------
verification <- list()
rel_diff <- function(a, b) {
    a <- as.numeric(a); b <- as.numeric(b)
    max(abs(a - b)) / max(abs(b), 1e-300)
}
check <- function(key, what, value, tol, kind = "relative") {
    verification[[length(verification) + 1L]] <<-
        list(model = key, check = what, kind = kind, max_discrepancy = value, tolerance = tol)
    if (!is.finite(value) || value > tol)
        stop(key, ": check failed: ", what, " (", kind, " discrepancy ",
             format(value, digits = 3), " > ", tol, ")")
    invisible(value)
}

## The probit family with a wrong mu.eta (exp(-eta^2) / sqrt(2 pi): the 1/2
## dropped from the exponent), for the size of a wrong-derivative signal.
wrong_probit <- function() {
    fam <- binomial("probit")
    fam$mu.eta <- function(eta) pmax(exp(-eta^2) / sqrt(2 * pi), .Machine$double.eps)
    fam
}

## The Laplace objective a PIRLS with a wrong mu.eta would report: Fisher
## scoring steps with the wrong derivative (in the score and the weights)
## iterated to their fixed point without step halving (the wrong score is not
## the gradient of the penalized deviance), then ldL2 + ||u||^2 + aic.
wrong_derivative_laplace <- function(P, wfam, theta, beta, tol = 1e-11, maxit = 500L) {
    ZL <- P$Z %*% lambda_of(P, theta)
    q <- ncol(ZL)
    base <- P$offset + drop(P$X %*% beta)
    u <- numeric(q)
    for (it in seq_len(maxit)) {
        eta <- base + drop(ZL %*% u)
        mu <- wfam$linkinv(eta); me <- wfam$mu.eta(eta); v <- wfam$variance(mu)
        W <- P$wt * me^2 / v
        score <- drop(as.matrix(crossprod(ZL, P$wt * (P$y - mu) * me / v))) - u
        step <- drop(solve(as.matrix(crossprod(ZL * sqrt(W))) + diag(q), score))
        u <- u + step
        if (max(abs(step)) < tol) break
    }
    if (max(abs(step)) >= tol) return(NA_real_)
    eta <- base + drop(ZL %*% u)
    mu <- wfam$linkinv(eta)
    W <- P$wt * wfam$mu.eta(eta)^2 / wfam$variance(mu)
    R <- chol(as.matrix(crossprod(ZL * sqrt(W))) + diag(q))
    2 * sum(log(diag(R))) + sum(u^2) + minus2_cond_loglik(P, mu)
}

## ---------------------------------------------------------------------------
## One model
## ---------------------------------------------------------------------------
fit_record <- function(key, m) {
    cat(sprintf("fitting %-26s %s, %s (nAGQ = %d)\n", key, m$formula, deparse(m$family), m$nagq))
    t0 <- proc.time()[["elapsed"]]
    cl <- model_call(m)
    warns <- character(0)
    fit <- withCallingHandlers(eval(cl, globalenv()), warning = function(w) {
        warns <<- c(warns, conditionMessage(w))
        invokeRestart("muffleWarning")
    })
    fam <- family(fit)
    nagq <- m$nagq
    theta <- getME(fit, "theta")
    ntheta <- length(theta)
    lower <- getME(fit, "lower")
    fe <- fixef(fit)
    par_hat <- unname(c(theta, fe))
    fval <- fit@devcomp$cmp[["dev"]]
    V <- as.matrix(vcov(fit)); dimnames(V) <- NULL
    P <- glmm_pieces(fit)
    N <- length(P$y)
    sat_const <- fit@resp$aic() - sum(fam$dev.resids(P$y, fitted(fit), P$wt))

    dcl <- cl
    dcl$devFunOnly <- TRUE
    devfun_tight <- suppressWarnings(eval(dcl, globalenv()))
    environment(devfun_tight)$tolPwrss <- 1e-14
    f_exact <- exact_objective_fun(P, ntheta, nagq)
    modes_at <- function(x) {
        det <- laplace_objective(P, x[seq_len(ntheta)], x[-seq_len(ntheta)], details = TRUE)
        list(b = I(unname(det$b)), condvar = I(unname(det$condvar_b)))
    }

    diag_theta <- lower == 0
    se_hat <- sqrt(diag(V))
    points <- list(
        list(label = "lme4 estimates", par = par_hat),
        list(label = "theta = 1, beta = signif(beta-hat, 2)",
             par = c(ifelse(diag_theta, 1, 0), signif(unname(fe), 2))),
        list(label = "theta = 1.5 theta-hat + 0.1, beta = beta-hat + 0.5 SE",
             par = c(ifelse(diag_theta, 1.5 * theta + 0.1, 1.5 * theta), unname(fe) + 0.5 * se_hat))
    )
    checks <- lapply(points, function(pt) {
        x <- unname(pt$par)
        v_exact <- exact_objective_fun(P, ntheta, nagq)(x)   # cold start (u = 0) at each point
        v_tight <- devfun_tight(x)
        check(key, paste0("tight lme4 devfun = exact objective [", pt$label, "]"),
              rel_diff(v_tight, v_exact), 1e-9)
        md <- modes_at(x)
        c(list(label = pt$label, theta = I(x[seq_len(ntheta)]), beta = I(x[-seq_len(ntheta)]),
               objective = v_exact, lme4_devfun_tight = v_tight), md)
    })

    pol <- newton_polish(f_exact, par_hat, maxit = 8L, refresh_hessian = TRUE)
    check(key, "exact optimum: scaled gradient ~ 0", max(abs(pol$scaled_gradient)), 1e-5, "absolute")
    check(key, "exact optimum <= lme4's objective (exact evaluation)",
          max(0, pol$objective - checks[[1]]$objective), 1e-9, "absolute")
    Hx <- lme4:::deriv12(f_exact, pol$par, delta = 1e-4, fx = pol$objective)$Hessian
    Vx <- vcov_from_hessian(Hx, ntheta)
    xt <- pol$par[seq_len(ntheta)]
    xb <- pol$par[-seq_len(ntheta)]
    det <- laplace_objective(P, xt, xb, details = TRUE)
    sat_x <- if (nagq == 1L) det$aic - det$drsum else
        agq_objective(P, xt, xb, nagq)[["saturated_constant"]]
    check(key, "saturated constant does not depend on mu", abs(sat_x - sat_const), 1e-9, "absolute")
    loglik_full <- if (nagq == 1L) -pol$objective / 2 else -(pol$objective + sat_x) / 2
    exact_opt <- list(
        theta = I(xt), beta = I(xb), objective = pol$objective,
        loglik_full = loglik_full,
        newton_iterations = pol$iterations,
        scaled_gradient = I(pol$scaled_gradient),
        fixef_se = I(sqrt(diag(Vx))),
        vcov = Vx,
        b = I(unname(det$b)),
        condvar = I(unname(det$condvar_b)),
        fitted_head = I(head(det$mu, 10)))

    wrong <- NULL
    if (fam$link == "probit" && nagq == 1L) {
        v_w <- wrong_derivative_laplace(P, wrong_probit(), unname(theta), unname(fe))
        wrong <- list(mu_eta = "exp(-eta^2) / sqrt(2 pi)", objective = v_w,
                      relative_change = abs(v_w / checks[[1]]$objective - 1))
    }

    rec <- list(
        dataset = m$dataset,
        formula = m$formula,
        family = fam$family,
        link = fam$link,
        nagq = nagq,
        response = m$response_rule,
        weights = m$weights_rule,
        nobs = as.integer(N),
        y_sum = sum(P$y),
        ngroups = as.list(vapply(ngrps(fit), as.integer, integer(1))),
        theta = I(unname(theta)),
        fixef = list(names = I(names(fe)), values = I(unname(fe))),
        fixef_se = I(unname(se_hat)),
        objective = fval,
        loglik = c(logLik(fit)),
        loglik_df = as.integer(attr(logLik(fit), "df")),
        saturated_constant = sat_const,
        warnings = I(unique(warns)),
        objective_checks = checks,
        exact_optimum = exact_opt,
        wrong_probit_derivative = wrong
    )
    for (nm in c("weights", "wrong_probit_derivative")) rec[nm] <- list(rec[[nm]])
    cat(sprintf("    %.1f s; lme4 objective %.10g, exact optimum %.10g\n",
                proc.time()[["elapsed"]] - t0, fval, pol$objective))
    rec
}

records <- list()
for (key in names(models)) records[[key]] <- fit_record(key, models[[key]])

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    lme4_version = as.character(packageDescription("lme4")$Version),
    matrix_version = as.character(packageDescription("Matrix")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "glmerControl() defaults",
    models = records,
    verification = verification
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
