## Reference fits of generalized linear mixed models with lme4::glmer().
##
## Run from the repository root (after the dataset exports):
##     Rscript tests/reference/glmm_reference.R          (about 2 minutes)
## It writes tests/reference/glmm.json.  The meaning of every field, and the
## exact definitions lme4 uses, are in tests/reference/GLMM_DEFINITIONS.md.
## Doubles are written so that they round-trip exactly (see exact_json.R).
##
## The data are read back from the bundled CSV files
## (python/multilevel/datasets/data/) and checked against the R packages, so
## every per-row output refers to the rows exactly as stored there.
##
## For every model the script records
##   * lme4's own results with glmerControl() defaults ("lme4"),
##   * the objective at fixed (theta, beta) points from lme4's deviance
##     function (default and tight PIRLS tolerance) and from the independent
##     re-implementation in glmm_reimpl.R (PIRLS iterated to convergence),
##   * the optimum of that exactly-evaluated objective ("exact_optimum"),
##     reached by Newton steps from lme4's estimates, with its Hessian-based
##     covariance matrix,
##   * glmmTMB's fit of the same model (Laplace fits only).
## It re-derives lme4's reported quantities from the formulas in
## GLMM_DEFINITIONS.md, stops if any disagree beyond the tolerances below,
## and records the largest discrepancies under "verification".

suppressPackageStartupMessages({
    library(Matrix)
    library(lme4)
    library(glmmTMB)
    library(jsonlite)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
source(file.path("tests", "reference", "glmm_reimpl.R"))

out_path <- file.path("tests", "reference", "glmm.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")

## Data: the bundled CSV + schema, rebuilt as R columns (dataset_writer.R).
read_bundled <- function(name) read_dataset(name, data_dir)


sources <- list(cbpp = lme4::cbpp, epil = MASS::epil,
                VerbAgg = lme4::VerbAgg,
                Contraception = local({
                    e <- new.env()
                    utils::data("Contraception", package = "mlmRev", envir = e)
                    e$Contraception
                }))
for (name in names(sources)) {
    d <- read_bundled(name)
    if (!same_values(d, sources[[name]]))
        stop(name, ": bundled data differ from the R package's copy")
    assign(name, d, envir = globalenv())
}

## ---------------------------------------------------------------------------
## Models
## ---------------------------------------------------------------------------
spec <- function(dataset, formula, family, nagq = 1L, weights = NULL,
                 offset = NULL, weights_rule = NULL, offset_rule = NULL,
                 response_rule) {
    list(dataset = dataset, formula = formula, family = family,
         nagq = as.integer(nagq), weights = weights, offset = offset,
         weights_rule = weights_rule, offset_rule = offset_rule,
         response_rule = response_rule)
}

cbpp_f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
cbpp_resp <- "proportion incidence / size with binomial size (prior weight) size"
epil_f <- "y ~ trt + lage + V4 + (1 | subject)"
verb_f <- "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
contra_f <- "use ~ age + I(age^2) + urban + livch + (urban | district)"

models <- list(
    cbpp_laplace = spec("cbpp", cbpp_f, "binomial", 1L, response_rule = cbpp_resp),
    cbpp_agq9 = spec("cbpp", cbpp_f, "binomial", 9L, response_rule = cbpp_resp),
    cbpp_agq25 = spec("cbpp", cbpp_f, "binomial", 25L, response_rule = cbpp_resp),
    cbpp_prop_weights = spec("cbpp", "incidence / size ~ period + (1 | herd)",
                             "binomial", 1L, weights = quote(size),
                             weights_rule = "size",
                             response_rule = "proportion incidence / size, prior weights size"),
    epil_poisson_offset = spec("epil", epil_f, "poisson", 1L,
                               offset = quote(log(base / 4)),
                               offset_rule = "log(base / 4)",
                               response_rule = "count y"),
    epil_poisson_offset_agq9 = spec("epil", epil_f, "poisson", 9L,
                                    offset = quote(log(base / 4)),
                                    offset_rule = "log(base / 4)",
                                    response_rule = "count y"),
    verbagg_crossed = spec("VerbAgg", verb_f, "binomial", 1L,
                           response_rule = "Bernoulli: 1 if r2 == 'Y' (second level), else 0"),
    contraception_slope = spec("Contraception", contra_f, "binomial", 1L,
                               response_rule = "Bernoulli: 1 if use == 'Y' (second level), else 0")
)

model_call <- function(m, fun = "glmer") {
    cl <- call(fun, formula = as.formula(m$formula, env = globalenv()),
               data = as.name(m$dataset), family = as.name(m$family))
    if (fun == "glmer") cl$nAGQ <- m$nagq
    if (!is.null(m$weights)) cl$weights <- m$weights
    if (!is.null(m$offset)) cl$offset <- m$offset
    cl
}

## ---------------------------------------------------------------------------
## Verification bookkeeping
## ---------------------------------------------------------------------------
verification <- list()
## Norm-wise relative difference: max |a - b| / max |b|.
rel_diff <- function(a, b) {
    a <- as.numeric(a); b <- as.numeric(b)
    max(abs(a - b)) / max(abs(b), 1e-300)
}
abs_diff <- function(a, b) max(abs(as.numeric(a) - as.numeric(b)))
check <- function(key, what, value, tol, kind = "relative") {
    verification[[length(verification) + 1L]] <<-
        list(model = key, check = what, kind = kind, max_discrepancy = value,
             tolerance = tol)
    if (!is.finite(value) || value > tol)
        stop(key, ": check failed: ", what, " (", kind, " discrepancy ",
             format(value, digits = 3), " > ", tol, ")")
    invisible(value)
}

## ---------------------------------------------------------------------------
## Helpers
## ---------------------------------------------------------------------------
varcorr_records <- function(fit) {
    vc <- as.data.frame(VarCorr(fit))
    lapply(seq_len(nrow(vc)), function(i) {
        list(grp = as.character(vc$grp[i]),
             var1 = if (is.na(vc$var1[i])) NULL else as.character(vc$var1[i]),
             var2 = if (is.na(vc$var2[i])) NULL else as.character(vc$var2[i]),
             vcov = vc$vcov[i],
             sdcor = vc$sdcor[i])
    })
}

## Conditional modes and the diagonals of the conditional variances, first
## `nhead` levels of every grouping factor.
ranef_record <- function(fit, nhead = 10L) {
    re <- ranef(fit, condVar = TRUE)
    out <- list()
    for (g in names(re)) {
        d <- re[[g]]
        pv <- attr(d, "postVar")
        k <- min(nhead, nrow(d))
        values <- unname(as.matrix(d))[seq_len(k), , drop = FALSE]
        cv <- t(vapply(seq_len(k), function(i)
            diag(matrix(pv[, , i], dim(pv)[1], dim(pv)[2])),
            numeric(dim(pv)[1])))
        if (dim(pv)[1] == 1L) cv <- matrix(cv, ncol = 1L)
        out[[g]] <- list(nlevels = nrow(d),
                         levels = I(rownames(d)[seq_len(k)]),
                         columns = I(colnames(d)),
                         values = values,
                         condvar = unname(cv))
    }
    out
}

## Split b = Lambda u (in lme4's order) into the same layout as ranef_record.
b_record <- function(fit, b, condvar, nhead = 10L) {
    out <- list()
    Gp <- fit@Gp
    cnms <- fit@cnms
    fl <- fit@flist
    for (t in seq_along(cnms)) {
        g <- names(cnms)[t]
        nc <- length(cnms[[t]])
        idx <- (Gp[t] + 1L):Gp[t + 1L]
        vals <- matrix(b[idx], ncol = nc, byrow = TRUE)
        cvs <- matrix(condvar[idx], ncol = nc, byrow = TRUE)
        k <- min(nhead, nrow(vals))
        out[[g]] <- list(nlevels = nrow(vals),
                         levels = I(levels(fl[[g]])[seq_len(k)]),
                         columns = I(cnms[[t]]),
                         values = vals[seq_len(k), , drop = FALSE],
                         condvar = cvs[seq_len(k), , drop = FALSE])
    }
    out
}

## ---------------------------------------------------------------------------
## One model
## ---------------------------------------------------------------------------
fit_record <- function(key, m) {
    cat(sprintf("fitting %-26s %s (nAGQ = %d)\n", key, m$formula, m$nagq))
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
    p <- length(fe)
    par_hat <- unname(c(theta, fe))
    stopifnot(identical(unname(fit@optinfo$val), par_hat))
    cmp <- fit@devcomp$cmp
    fval <- cmp[["dev"]]
    ll <- logLik(fit)
    V <- as.matrix(vcov(fit)); dimnames(V) <- NULL
    V_rx <- suppressWarnings(as.matrix(vcov(fit, use.hessian = FALSE)))
    dimnames(V_rx) <- NULL
    mu <- fitted(fit)
    P <- glmm_pieces(fit)
    N <- length(P$y)

    ## ---- formulas behind lme4's reported numbers -------------------------
    check(key, "logLik = -objective/2", rel_diff(-2 * c(ll), fval), 0)
    check(key, "logLik df = p + ntheta", abs(attr(ll, "df") - (p + ntheta)), 0, "absolute")
    check(key, "AIC = -2 logLik + 2 df", rel_diff(AIC(fit), fval + 2 * (p + ntheta)), 1e-15)
    check(key, "BIC = -2 logLik + log(nobs) df",
          rel_diff(BIC(fit), fval + log(N) * (p + ntheta)), 1e-15)
    check(key, "nobs = number of rows", abs(nobs(fit) - N), 0, "absolute")
    devres <- fam$dev.resids(P$y, mu, P$wt)
    check(key, "deviance() = sum of squared deviance residuals",
          rel_diff(deviance(fit), sum(devres)), 1e-13)
    check(key, "devcomp drsum = sum of deviance residuals",
          rel_diff(cmp[["drsum"]], sum(devres)), 1e-13)
    ## the family's aic() term, written out
    aic_term <- fit@resp$aic()
    aic_explicit <- if (fam$family == "binomial") {
        mm <- if (any(P$n > 1)) P$n else P$wt
        -2 * sum(ifelse(mm > 0, P$wt / mm, 0) *
                 dbinom(round(mm * P$y), round(mm), mu, log = TRUE))
    } else {
        -2 * sum(dpois(P$y, mu, log = TRUE) * P$wt)
    }
    check(key, "aic term = -2 sum log p(y | mu) (explicit)", rel_diff(aic_term, aic_explicit), 1e-13)
    sat_const <- aic_term - sum(devres)
    ## the saturated constant in closed form (0 log 0 = 0)
    xlogx <- function(x) ifelse(x > 0, x * log(x), 0)
    sat_closed <- if (fam$family == "binomial") {
        mm <- if (any(P$n > 1)) P$n else P$wt
        k <- round(mm * P$y)
        -2 * sum(ifelse(mm > 0, P$wt / mm, 0) *
                 (lchoose(mm, k) + xlogx(k) + xlogx(mm - k) - xlogx(mm)))
    } else {
        -2 * sum(P$wt * (xlogx(P$y) - P$y - lgamma(P$y + 1)))
    }
    check(key, "aic - sum(devres) = saturated constant (closed form)",
          abs_diff(sat_const, sat_closed), 1e-9, "absolute")
    ## the saturated constant does not depend on mu
    mu_alt <- fam$linkinv(fam$linkfun(mu) + 0.3)
    check(key, "aic - sum(devres) is independent of mu",
          abs_diff(fam$aic(P$y, P$n, mu_alt, P$wt, 0) -
                   sum(fam$dev.resids(P$y, mu_alt, P$wt)), sat_const),
          1e-9, "absolute")
    if (nagq == 1L) {
        check(key, "objective = ldL2 + ||u||^2 + aic (lme4's own state)",
              rel_diff(cmp[["ldL2"]] + sum(getME(fit, "u")^2) + aic_term, fval), 1e-12)
    }
    check(key, "ussq = ||u||^2", rel_diff(cmp[["ussq"]], sum(getME(fit, "u")^2)), 1e-13)
    check(key, "b = Lambda u",
          abs_diff(getME(fit, "b"), lambda_of(P, theta) %*% getME(fit, "u")), 1e-13, "absolute")
    ## working weights stored in the response module
    eta_fit <- fam$linkfun(mu)
    check(key, "resp sqrtXwt^2 = wt mu_eta^2 / V(mu) at the final mu",
          rel_diff(fit@resp$sqrtXwt^2, working_weights(P, fit@resp$eta)), 1e-12)
    ## residuals
    r_dev <- residuals(fit, type = "deviance")
    r_pea <- residuals(fit, type = "pearson")
    r_res <- residuals(fit, type = "response")
    check(key, "deviance residuals = sign(y - mu) sqrt(dev.resids)",
          abs_diff(r_dev, sign(P$y - mu) * sqrt(devres)), 1e-13, "absolute")
    check(key, "Pearson residuals = (y - mu) sqrt(wt / V(mu))",
          abs_diff(r_pea, (P$y - mu) * sqrt(P$wt / fam$variance(mu))), 1e-13, "absolute")
    check(key, "response residuals = y - mu", abs_diff(r_res, P$y - mu), 0, "absolute")
    check(key, "fitted = linkinv(offset + X beta + Z b)",
          abs_diff(mu, fam$linkinv(P$offset + drop(P$X %*% fe) +
                                   drop(P$Z %*% getME(fit, "b")))), 1e-12, "absolute")
    ## conditional variances: diag(Lambda (L L')^-1 Lambda') with lme4's L
    Lam <- lambda_of(P, theta)
    Lf <- getME(fit, "L")
    re_cv <- ranef(fit, condVar = TRUE)
    cv_lme4 <- unlist(lapply(names(fit@cnms), function(g) {
        pv <- attr(re_cv[[g]], "postVar")
        d <- dim(pv)[1]
        as.vector(vapply(seq_len(dim(pv)[3]), function(i)
            diag(matrix(pv[, , i], d, d)), numeric(d)))
    }))
    Minv <- solve(Lf, t(Lam), system = "A")          # (Lambda' Z'WZ Lambda + I)^-1 Lambda'
    cv_formula <- rowSums(as.matrix(Lam) * t(as.matrix(Minv)))
    ## reorder cv_formula (lme4 order: term, level, column) like ranef's arrays
    cv_ranef_order <- unlist(lapply(seq_along(fit@cnms), function(t) {
        nc <- length(fit@cnms[[t]])
        idx <- (fit@Gp[t] + 1L):fit@Gp[t + 1L]
        as.vector(t(matrix(cv_formula[idx], ncol = nc, byrow = TRUE)))
    }))
    check(key, "condVar = diag(Lambda (L L')^-1 Lambda') with lme4's L",
          rel_diff(cv_lme4, cv_ranef_order), 1e-10)
    ## vcov: Hessian recipe
    H <- fit@optinfo$derivs$Hessian
    check(key, "vcov = 2 (H^-1)_(beta,beta), symmetrised, from the optinfo Hessian",
          rel_diff(V, vcov_from_hessian(H, ntheta)), 1e-14)
    check(key, "vcov(use.hessian = FALSE) = pp$unsc()",
          rel_diff(V_rx, as.matrix(fit@pp$unsc())), 1e-14)

    ## ---- deviance functions -----------------------------------------------
    dcl <- cl
    dcl$devFunOnly <- TRUE
    devfun <- suppressWarnings(eval(dcl, globalenv()))
    devfun_tight <- suppressWarnings(eval(dcl, globalenv()))
    environment(devfun_tight)$tolPwrss <- 1e-14
    check(key, "devFunOnly devfun at the estimates = objective",
          rel_diff(devfun(par_hat), fval), 1e-12)
    Hre <- lme4:::deriv12(devfun, par_hat, delta = 1e-4, fx = fval)$Hessian
    check(key, "optinfo Hessian = deriv12(devfun, c(theta, beta), delta = 1e-4)",
          rel_diff(Hre, H), 1e-9)
    lp0 <- environment(devfun)$lp0
    f_exact <- exact_objective_fun(P, ntheta, nagq)

    ## fixed check points
    diag_theta <- lower == 0
    se_hat <- sqrt(diag(V))
    points <- list(
        list(label = "lme4 estimates", par = par_hat),
        list(label = "theta = lme4 start (1 diagonal, 0 off-diagonal), beta = signif(beta-hat, 2)",
             par = c(ifelse(diag_theta, 1, 0), signif(unname(fe), 2))),
        list(label = "theta = 1.5 theta-hat (+ 0.1 on the diagonal), beta = beta-hat + 0.5 SE",
             par = c(ifelse(diag_theta, 1.5 * theta + 0.1, 1.5 * theta),
                     unname(fe) + 0.5 * se_hat))
    )
    checks <- lapply(points, function(pt) {
        x <- unname(pt$par)
        v_default <- devfun(x)
        v_tight <- devfun_tight(x)
        v_exact <- f_exact(x)
        rec <- list(label = pt$label, theta = I(x[seq_len(ntheta)]),
                    beta = I(x[-seq_len(ntheta)]),
                    objective = v_exact,
                    lme4_devfun = v_default,
                    lme4_devfun_tight = v_tight)
        if (nagq == 1L) {
            v_emul <- lme4_laplace_emulation(P, x[seq_len(ntheta)], x[-seq_len(ntheta)], lp0)
            check(key, paste0("emulated lme4 PIRLS = lme4 devfun [", pt$label, "]"),
                  rel_diff(v_emul, v_default), 1e-12)
            rec$lme4_emulation <- v_emul
        }
        check(key, paste0("tight-tolerance lme4 devfun = exact objective [", pt$label, "]"),
              rel_diff(v_tight, v_exact), 1e-9)
        check(key, paste0("default lme4 devfun ~ exact objective [", pt$label, "]"),
              rel_diff(v_default, v_exact), 1e-4)
        rec
    })

    ## stage 1 (nAGQ = 0) objective at theta-hat
    d0cl <- cl
    d0cl$nAGQ <- 0L
    d0cl$devFunOnly <- TRUE
    devfun0 <- suppressWarnings(eval(d0cl, globalenv()))
    environment(devfun0)$tolPwrss <- 1e-14
    st1 <- pirls_joint(P, unname(theta), unname(fe))
    check(key, "nAGQ = 0 devfun (tight) = joint-PIRLS objective",
          rel_diff(devfun0(unname(theta)), st1[["objective"]]), 1e-9)
    nagq0 <- list(theta = I(unname(theta)), objective = st1[["objective"]],
                   beta = I(unname(st1[-1])))

    ## ---- exact optimum ----------------------------------------------------
    pol <- newton_polish(f_exact, par_hat)
    Hx <- lme4:::deriv12(f_exact, pol$par, delta = 1e-4, fx = pol$objective)$Hessian
    Vx <- vcov_from_hessian(Hx, ntheta)
    xt <- pol$par[seq_len(ntheta)]
    xb <- pol$par[-seq_len(ntheta)]
    if (nagq == 1L) {
        det <- laplace_objective(P, xt, xb, details = TRUE)
        sat_x <- det$aic - det$drsum
        obj_loglik <- -det$objective / 2
    } else {
        det <- laplace_objective(P, xt, xb, details = TRUE)   # modes, W, condVar
        agq <- agq_objective(P, xt, xb, nagq)
        sat_x <- agq[["saturated_constant"]]
        obj_loglik <- -(pol$objective + sat_x) / 2
    }
    check(key, "exact optimum: scaled gradient ~ 0", max(abs(pol$scaled_gradient)), 1e-5, "absolute")
    check(key, "exact optimum objective <= lme4 objective at lme4 estimates (exact evaluation)",
          max(0, pol$objective - checks[[1]]$objective), 1e-9, "absolute")
    exact_opt <- list(
        theta = I(xt), beta = I(xb),
        objective = pol$objective,
        loglik = -pol$objective / 2,
        loglik_full = obj_loglik,
        saturated_constant = sat_x,
        newton_iterations = pol$iterations,
        scaled_gradient = I(pol$scaled_gradient),
        vcov = Vx,
        fixef_se = I(sqrt(diag(Vx))),
        vcov_rx = det$unsc,
        ranef = b_record(fit, det$b, det$condvar_b),
        fitted_head = I(head(det$mu, 10))
    )

    ## ---- glmmTMB ------------------------------------------------------------
    tmb <- NULL
    if (nagq == 1L) {
        tcl <- model_call(m, "glmmTMB")
        g <- suppressWarnings(eval(tcl, globalenv()))
        gll <- logLik(g)
        gfe <- fixef(g)$cond
        gV <- as.matrix(vcov(g)$cond); dimnames(gV) <- NULL
        vc <- VarCorr(g)$cond
        tmb <- list(
            loglik = c(gll), objective = -2 * c(gll),
            loglik_df = as.integer(attr(gll, "df")),
            fixef = list(names = I(names(gfe)), values = I(unname(gfe))),
            fixef_se = I(sqrt(diag(gV))), vcov = gV,
            varcorr = lapply(names(vc), function(gr) {
                s <- attr(vc[[gr]], "stddev")
                cr <- attr(vc[[gr]], "correlation")
                list(grp = gr, names = I(names(s)), sd = I(unname(s)),
                     corr = if (length(s) > 1) unname(cr) else NULL)
            }),
            pdHess = isTRUE(g$sdr$pdHess),
            convergence = g$fit$convergence
        )
        check(key, "glmmTMB logLik ~ exact optimum", abs(c(gll) - exact_opt$loglik), 1e-5, "absolute")
        check(key, "glmmTMB fixef ~ exact optimum", abs_diff(gfe, xb) / max(abs(xb)), 1e-4)
        check(key, "glmmTMB vcov ~ Hessian vcov at exact optimum", rel_diff(diag(gV), diag(Vx)), 2e-3)
    }

    rec <- list(
        dataset = m$dataset,
        formula = m$formula,
        family = fam$family,
        link = fam$link,
        nagq = nagq,
        response = m$response_rule,
        weights = m$weights_rule,
        offset = m$offset_rule,
        nobs = as.integer(N),
        ngroups = as.list(vapply(ngrps(fit), as.integer, integer(1))),
        theta = I(unname(theta)),
        theta_names = I(names(theta)),
        theta_diagonal = I(unname(diag_theta)),
        fixef = list(names = I(names(fe)), values = I(unname(fe))),
        fixef_se = I(unname(sqrt(diag(V)))),
        vcov = V,
        vcov_rx = V_rx,
        varcorr = varcorr_records(fit),
        objective = fval,
        loglik = c(ll),
        loglik_df = as.integer(attr(ll, "df")),
        aic = AIC(fit),
        bic = BIC(fit),
        deviance = deviance(fit),
        devcomp = list(ldL2 = cmp[["ldL2"]], ussq = cmp[["ussq"]],
                       drsum = cmp[["drsum"]], aic_term = aic_term,
                       ldRX2 = cmp[["ldRX2"]], pwrss = cmp[["pwrss"]]),
        saturated_constant = sat_const,
        loglik_full = if (nagq > 1L) -(fval + sat_const) / 2 else c(ll),
        ranef = ranef_record(fit),
        fitted_head = I(unname(head(mu, 10))),
        eta_head = I(unname(head(fit@resp$eta, 10))),
        resid_deviance_head = I(unname(head(r_dev, 10))),
        resid_pearson_head = I(unname(head(r_pea, 10))),
        resid_response_head = I(unname(head(r_res, 10))),
        working_weights_head = I(unname(head(fit@resp$sqrtXwt^2, 10))),
        optimizer = I(unname(unlist(glmerControl()$optimizer))),
        feval = as.integer(fit@optinfo$feval),
        gradient = I(unname(fit@optinfo$derivs$gradient)),
        hessian = unname(H),
        convergence_messages = I(as.character(unlist(fit@optinfo$conv$lme4$messages))),
        warnings = I(unique(warns)),
        singular = isSingular(fit),
        objective_checks = checks,
        nagq0_at_theta_hat = nagq0,
        exact_optimum = exact_opt,
        glmmtmb = tmb
    )

    ## getME(fit, "devfun") last: it builds a new deviance function whose
    ## PIRLS starts from the nAGQ = 0 fit at theta-hat, so its values differ
    ## from devFunOnly's at the PIRLS-tolerance level, and whose 'pp' shares
    ## the fit's Lambdat memory: evaluating it at another theta overwrites
    ## fit@pp$Lambdat, so ranef(fit) would be wrong afterwards.
    dg <- getME(fit, "devfun")
    for (i in seq_along(checks)) {
        x <- c(checks[[i]]$theta, checks[[i]]$beta)
        v <- dg(unclass(x))
        rec$objective_checks[[i]]$lme4_getme_devfun <- v
        check(key, paste0("getME devfun ~ exact objective [", points[[i]]$label, "]"),
              rel_diff(v, checks[[i]]$objective), 1e-4)
    }
    ## keep explicit nulls
    rec["weights"] <- list(m$weights_rule)
    rec["offset"] <- list(m$offset_rule)
    rec["glmmtmb"] <- list(tmb)
    cat(sprintf("    %.1f s; objective %.10g, exact optimum %.10g\n",
                proc.time()[["elapsed"]] - t0, fval, pol$objective))
    rec
}

## ---------------------------------------------------------------------------
## Gauss-Hermite rules
## ---------------------------------------------------------------------------
ghrules <- list()
for (k in c(1L, 2L, 3L, 5L, 9L, 25L)) {
    r <- GHrule(k)
    gw <- ghrule_golub_welsch(k)
    check(paste0("GHrule(", k, ")"), "nodes = Golub-Welsch nodes",
          abs_diff(r[, "z"], gw[, "z"]), 1e-13, "absolute")
    check(paste0("GHrule(", k, ")"), "weights = Golub-Welsch weights",
          abs_diff(r[, "w"], gw[, "w"]), 1e-13, "absolute")
    check(paste0("GHrule(", k, ")"), "ldnorm = dnorm(z, log = TRUE)",
          abs_diff(r[, "ldnorm"], dnorm(r[, "z"], log = TRUE)), 0, "absolute")
    ghrules[[as.character(k)]] <- list(z = I(unname(r[, "z"])), w = I(unname(r[, "w"])),
                                       ldnorm = I(unname(r[, "ldnorm"])))
}

records <- list()
for (key in names(models)) records[[key]] <- fit_record(key, models[[key]])

## cbind() and proportion + weights give the same fit
a <- records$cbpp_laplace; b <- records$cbpp_prop_weights
check("cbpp_prop_weights", "same objective as cbind() response", rel_diff(b$objective, a$objective), 1e-12)
check("cbpp_prop_weights", "same fixef as cbind() response",
      rel_diff(b$fixef$values, a$fixef$values), 1e-10)
## the AGQ objective approaches the Laplace one plus the saturated constant
laplace_of <- c(cbpp_agq9 = "cbpp_laplace", cbpp_agq25 = "cbpp_laplace",
                epil_poisson_offset_agq9 = "epil_poisson_offset")
for (key in names(laplace_of)) {
    lap <- records[[laplace_of[[key]]]]
    r <- records[[key]]
    check(key, "AGQ -2 loglik (with saturated constant) within 1 of Laplace",
          abs(-2 * r$exact_optimum$loglik_full - lap$exact_optimum$objective), 1, "absolute")
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    lme4_version = as.character(packageDescription("lme4")$Version),
    matrix_version = as.character(packageDescription("Matrix")$Version),
    glmmtmb_version = as.character(packageDescription("glmmTMB")$Version),
    tmb_version = as.character(packageDescription("TMB")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "glmerControl() defaults",
    ghrules = ghrules,
    models = records,
    verification = verification
)

writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
