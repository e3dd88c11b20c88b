## Reference fits of GLMMs with an estimated dispersion parameter
## (negative binomial NB2 and Gamma, log link) with glmmTMB.
##
## Run from the repository root:
##     Rscript tests/reference/glmm_dispersion_reference.R    (about 10 s)
## It writes tests/reference/glmm_dispersion.json.  Conventions and the
## meaning of every field are in tests/reference/GLMM_DISPERSION.md.
## Doubles are written so that they round-trip exactly (see exact_json.R).
##
## Every model has a single scalar random intercept.  For each model the
## script records glmmTMB's estimates (default glmmTMBControl()), TMB's
## internal parameter vector, the Laplace objective at two fixed non-optimal
## parameter points, and re-derives the objective independently: a plain-R
## Laplace approximation (per-group Newton iterations to the conditional
## mode, observed Hessian) that uses only stats::dnbinom / stats::dgamma /
## stats::dnorm.  It also verifies the dispersion conventions numerically.
## It stops if any check fails and stores the discrepancies under
## "verification".

suppressPackageStartupMessages({
    library(glmmTMB)
    library(jsonlite)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

out_path <- file.path("tests", "reference", "glmm_dispersion.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")
read_bundled <- function(name) read_dataset(name, data_dir)

epil <- read_bundled("epil")
if (!same_values(epil, MASS::epil)) stop("epil: bundled data differ from MASS::epil")
dietox <- read_bundled("dietox")
if (!same_values(dietox, geepack::dietox)) stop("dietox: bundled data differ from geepack::dietox")
## subject is stored as an integer; the grouping factor is factor(subject),
## whose levels are "1", ..., "59" in numeric order.
epil$subject <- factor(epil$subject)

## ---------------------------------------------------------------------------
## Simulated NB2 data set (no offset), written into the JSON itself.
## ---------------------------------------------------------------------------
sim_seed <- 20240611L
RNGkind("Mersenne-Twister", "Inversion", "Rejection")
set.seed(sim_seed)
sim_ngroups <- 40L
sim_nper <- 10L
sim_truth <- list(beta = c(0.5, 0.4), re_sd = 0.7, k = 3)
nbsim <- local({
    g <- rep(seq_len(sim_ngroups), each = sim_nper)
    x <- round(rnorm(sim_ngroups * sim_nper), 3)
    b <- rnorm(sim_ngroups, 0, sim_truth$re_sd)
    mu <- exp(sim_truth$beta[1] + sim_truth$beta[2] * x + b[g])
    y <- rnbinom(length(mu), size = sim_truth$k, mu = mu)
    data.frame(group = factor(g), x = x, y = as.integer(y))
})

## ---------------------------------------------------------------------------
## Verification bookkeeping
## ---------------------------------------------------------------------------
verification <- list()
check <- function(key, what, value, tol, kind = "relative") {
    verification[[length(verification) + 1L]] <<-
        list(model = key, check = what, kind = kind, max_discrepancy = value,
             tolerance = tol)
    if (!is.finite(value) || value > tol)
        stop(key, ": check failed: ", what, " (", kind, " discrepancy ",
             format(value, digits = 3), " > ", tol, ")")
    invisible(value)
}
rel_diff <- function(a, b) {
    a <- as.numeric(a); b <- as.numeric(b)
    max(abs(a - b)) / max(abs(b), 1e-300)
}

## ---------------------------------------------------------------------------
## Independent Laplace approximation (scalar random intercept per group).
##
## Conditional log-density l(y | eta), its first and second derivatives in
## eta (log link: mu = exp(eta)), per family.  `disp` is the TMB internal
## dispersion parameter betad: phi = exp(betad) is the NB2 shape k, or the
## Gamma shape a (= 1 / sigma^2).
## ---------------------------------------------------------------------------
cond_terms <- function(family, y, eta, betad) {
    phi <- exp(betad)
    mu <- exp(eta)
    if (family == "nbinom2") {
        k <- phi
        ll <- dnbinom(y, size = k, mu = mu, log = TRUE)
        d1 <- k * (y - mu) / (k + mu)
        d2 <- -(y + k) * k * mu / (k + mu)^2        # observed
        d2e <- -k * mu / (k + mu)                   # expected (Fisher)
    } else if (family == "Gamma") {
        a <- phi
        ll <- dgamma(y, shape = a, scale = mu / a, log = TRUE)
        d1 <- a * (y / mu - 1)
        d2 <- -a * y / mu                            # observed
        d2e <- rep(-a, length(y))                    # expected (Fisher)
    } else stop("unknown family")
    list(ll = ll, d1 = d1, d2 = d2, d2e = d2e)
}

## Negative Laplace log-likelihood at TMB's internal parameters
## (beta, betad, theta = log SD).  Returns the value, the conditional modes,
## and the same objective with the expected instead of the observed Hessian
## at the same mode (for information only).
laplace_nll <- function(family, y, X, offset, g, beta, betad, theta,
                        b_start = NULL) {
    s <- exp(theta)
    q <- nlevels(g); gi <- as.integer(g)
    eta0 <- drop(X %*% beta) + offset
    b <- if (is.null(b_start)) numeric(q) else b_start
    joint <- function(b) {
        ct <- cond_terms(family, y, eta0 + b[gi], betad)
        rowsum(ct$ll, gi, reorder = TRUE)[, 1] + dnorm(b, 0, s, log = TRUE)
    }
    cur <- joint(b)
    for (it in 1:200) {
        ct <- cond_terms(family, y, eta0 + b[gi], betad)
        gr <- rowsum(ct$d1, gi, reorder = TRUE)[, 1] - b / s^2
        h <- rowsum(ct$d2, gi, reorder = TRUE)[, 1] - 1 / s^2
        step <- -gr / h
        ## per-group step halving (the joint density is concave in b_j)
        bn <- b + step
        new <- joint(bn)
        for (half in 1:30) {
            bad <- new < cur - 1e-12 * abs(cur)
            if (!any(bad)) break
            step[bad] <- step[bad] / 2
            bn <- b + step
            new <- joint(bn)
        }
        b <- bn; cur <- new
        if (max(abs(step)) < 1e-13) break
    }
    ct <- cond_terms(family, y, eta0 + b[gi], betad)
    h <- rowsum(ct$d2, gi, reorder = TRUE)[, 1] - 1 / s^2
    he <- rowsum(ct$d2e, gi, reorder = TRUE)[, 1] - 1 / s^2
    jl <- joint(b)
    nll <- -sum(jl + 0.5 * log(2 * pi) - 0.5 * log(-h))
    nll_e <- -sum(jl + 0.5 * log(2 * pi) - 0.5 * log(-he))
    list(nll = nll, nll_expected_hessian = nll_e, b = b, condvar = -1 / h,
         iterations = it)
}

## Numerical Hessian (central differences) of f at x.
num_hessian <- function(f, x, h = 1e-4) {
    p <- length(x); H <- matrix(0, p, p)
    f0 <- f(x)
    for (i in 1:p) for (j in i:p) {
        ei <- replace(numeric(p), i, h); ej <- replace(numeric(p), j, h)
        if (i == j) {
            H[i, i] <- (-f(x + 2 * ei) + 16 * f(x + ei) - 30 * f0 +
                        16 * f(x - ei) - f(x - 2 * ei)) / (12 * h^2)
        } else {
            H[i, j] <- H[j, i] <- (f(x + ei + ej) - f(x + ei - ej) -
                                   f(x - ei + ej) + f(x - ei - ej)) / (4 * h^2)
        }
    }
    H
}

## ---------------------------------------------------------------------------
## Models
## ---------------------------------------------------------------------------
dispersion_meaning <- list(
    nbinom2 = list(
        glmmtmb_value = "sigma(fit) = exp(betad) = k, the NB2 shape (size)",
        variance = "Var(y | b) = mu + mu^2 / k",
        density = "dnbinom(y, size = k, mu = mu): Gamma(y + k) / (Gamma(k) y!) (k / (k + mu))^k (mu / (k + mu))^y",
        internal = "betad = log(k)",
        overdispersion_alpha = "alpha = 1 / k (Var = mu + alpha mu^2)"),
    Gamma = list(
        glmmtmb_value = "sigma(fit) = exp(-betad / 2) = coefficient of variation",
        variance = "Var(y | b) = sigma^2 mu^2 (family variance function V(mu) = mu^2, GLM dispersion phi = sigma^2)",
        density = "dgamma(y, shape = a, scale = mu / a) with shape a = 1 / sigma^2",
        internal = "betad = log(a) = log(shape) = -2 log(sigma)",
        overdispersion_alpha = NULL)
)

models <- list(
    epil_nbinom2_offset = list(
        dataset = "epil", data = quote(epil),
        formula = "y ~ trt + lage + V4 + (1 | subject)",
        family = "nbinom2", family_call = quote(nbinom2(link = "log")),
        offset = quote(log(base / 4)), offset_rule = "log(base / 4)",
        group = "subject",
        group_rule = "factor(subject); levels '1'..'59' in numeric order",
        ## fixed non-optimal points: beta, random-intercept SD, dispersion
        ## (k for nbinom2, sigma for Gamma)
        points = list(
            list(beta = c(0.1, -0.3, 0.3, -0.1), re_sd = 0.5, dispersion = 5),
            list(beta = c(0.0, -0.2, 0.5, -0.2), re_sd = 0.8, dispersion = 12))),
    dietox_gamma = list(
        dataset = "dietox", data = quote(dietox),
        formula = "Weight ~ Time + (1 | Pig)",
        family = "Gamma", family_call = quote(Gamma(link = "log")),
        offset = NULL, offset_rule = NULL,
        group = "Pig", group_rule = "Pig (factor, levels as in dietox.json)",
        points = list(
            list(beta = c(3.2, 0.125), re_sd = 0.1, dispersion = 0.1),
            list(beta = c(3.25, 0.12), re_sd = 0.15, dispersion = 0.07))),
    nbsim_nbinom2 = list(
        dataset = "simulated (nbsim, in this JSON)", data = quote(nbsim),
        formula = "y ~ x + (1 | group)",
        family = "nbinom2", family_call = quote(nbinom2(link = "log")),
        offset = NULL, offset_rule = NULL,
        group = "group", group_rule = "factor(group); levels '1'..'40'",
        points = list(
            list(beta = c(0.4, 0.5), re_sd = 0.5, dispersion = 2),
            list(beta = c(0.6, 0.3), re_sd = 1.0, dispersion = 6)))
)

## TMB internal parameter vector for natural-scale values.
to_internal <- function(family, beta, re_sd, dispersion) {
    betad <- if (family == "nbinom2") log(dispersion) else -2 * log(dispersion)
    c(beta, betad, log(re_sd))
}

records <- list()
for (key in names(models)) {
    m <- models[[key]]
    cat("fitting", key, "\n")
    cl <- call("glmmTMB", formula = as.formula(m$formula, env = globalenv()),
               data = m$data, family = m$family_call)
    if (!is.null(m$offset)) cl$offset <- m$offset
    fit <- eval(cl, globalenv())
    dat <- eval(m$data, globalenv())
    fam <- family(fit)
    if (fam$family != m$family || fam$link != "log") stop(key, ": family")

    ## -- design pieces for the re-implementation -------------------------
    fixed_f <- lme4::nobars(as.formula(m$formula))
    X <- model.matrix(fixed_f, dat)
    y <- model.response(model.frame(fixed_f, dat))
    off <- if (is.null(m$offset)) numeric(nrow(dat)) else eval(m$offset, dat)
    g <- dat[[m$group]]
    if (!is.factor(g)) stop(key, ": group is not a factor")
    if (nrow(X) != nobs(fit)) stop(key, ": rows dropped")

    fe <- fixef(fit)$cond
    if (!identical(names(fe), colnames(X))) stop(key, ": fixef names")
    V <- as.matrix(vcov(fit)$cond)
    Vfull <- as.matrix(vcov(fit, full = TRUE))
    vc <- VarCorr(fit)$cond[[m$group]]
    re_sd <- unname(attr(vc, "stddev"))
    sig <- sigma(fit)
    ll <- logLik(fit)
    obj <- fit$obj
    par_opt <- fit$fit$par
    par_names <- names(par_opt)
    p <- length(fe)
    if (!identical(par_names, c(rep("beta", p), "betad", "theta")))
        stop(key, ": unexpected TMB parameter layout: ", paste(par_names, collapse = ","))
    par_labels <- c(paste0("beta:", names(fe)), "betad",
                    paste0("theta:log_sd(", m$group, ".(Intercept))"))
    betad_opt <- unname(par_opt[p + 1]); theta_opt <- unname(par_opt[p + 2])
    ## Everything read from the fitted object is extracted here, before any
    ## further call of obj$fn / obj$gr: those calls move TMB's
    ## last.par / last.par.best, which ranef() and predict() read.
    lpb_saved <- obj$env$last.par.best
    rr <- ranef(fit, condVar = TRUE)$cond[[m$group]]
    mu_head <- head(unname(predict(fit, type = "response")), 10)
    eta_head <- head(unname(predict(fit, type = "link")), 10)

    ## -- parameter-layout and dispersion-convention checks ---------------
    check(key, "VarCorr SD == exp(theta)", abs(re_sd - exp(theta_opt)) / re_sd, 1e-15)
    check(key, "fixef == TMB beta", rel_diff(fe, par_opt[1:p]), 0)
    if (m$family == "nbinom2") {
        k <- sig
        check(key, "sigma(fit) == exp(betad) (= k)", abs(sig - exp(betad_opt)) / sig, 1e-15)
        ## variance function of glmmTMB's family object with theta = k
        mu_grid <- c(0.3, 1, 4.7, 20)
        check(key, "family$variance(mu, k) == mu + mu^2/k",
              rel_diff(fam$variance(mu_grid, k), mu_grid + mu_grid^2 / k), 1e-15)
        ## first two moments of dnbinom(size = k, mu) by summation
        mom <- vapply(mu_grid, function(mu) {
            yy <- 0:20000; pr <- dnbinom(yy, size = k, mu = mu)
            m1 <- sum(yy * pr); c(m1, sum((yy - m1)^2 * pr))
        }, numeric(2))
        check(key, "E[y] of dnbinom(size = k, mu) == mu", rel_diff(mom[1, ], mu_grid), 1e-10)
        check(key, "Var[y] of dnbinom(size = k, mu) == mu + mu^2/k",
              rel_diff(mom[2, ], mu_grid + mu_grid^2 / k), 1e-10)
        disp_nat <- list(name = "k", value = k, alpha = 1 / k)
    } else {
        check(key, "sigma(fit) == exp(-betad/2) (= CV)", abs(sig - exp(-betad_opt / 2)) / sig, 1e-15)
        a <- exp(betad_opt)
        mu_grid <- c(0.3, 1, 4.7, 20)
        check(key, "family$variance(mu) == mu^2", rel_diff(fam$variance(mu_grid), mu_grid^2), 0)
        mom <- vapply(mu_grid, function(mu) {
            f <- function(v) dgamma(v, shape = a, scale = mu / a)
            m1 <- integrate(function(v) v * f(v), 0, Inf, rel.tol = 1e-12)$value
            m2 <- integrate(function(v) (v - mu)^2 * f(v), 0, Inf, rel.tol = 1e-12)$value
            c(m1, m2)
        }, numeric(2))
        check(key, "E[y] of dgamma(shape = 1/sigma^2, scale = mu sigma^2) == mu",
              rel_diff(mom[1, ], mu_grid), 1e-8)
        check(key, "Var[y] of that Gamma == sigma^2 mu^2",
              rel_diff(mom[2, ], sig^2 * mu_grid^2), 1e-8)
        disp_nat <- list(name = "sigma", value = sig, shape = a,
                         glm_dispersion_phi = sig^2)
    }
    ## Simulation check with TMB's own simulator (obj$simulate, as used by
    ## simulate.glmmTMB; it draws new random effects b ~ N(0, SD^2) and then
    ## y | b).  With m0 = exp(X beta + offset) and s = SD the marginal
    ## variance implied by the stated convention is
    ##   nbinom2: m0 e^{s^2/2} + m0^2 e^{2 s^2} / k + m0^2 (e^{2 s^2} - e^{s^2})
    ##   Gamma:   m0^2 e^{2 s^2} (1 + sigma^2) - m0^2 e^{s^2}
    ## The mean over rows of (sample variance / implied variance) must be ~1.
    set.seed(1L)
    lp <- lpb_saved
    ysim <- replicate(2000, obj$simulate(lp)$yobs)
    m0 <- exp(drop(X %*% fe) + off); s2 <- re_sd^2
    vtheory <- if (m$family == "nbinom2") {
        m0 * exp(s2 / 2) + m0^2 * exp(2 * s2) / sig + m0^2 * (exp(2 * s2) - exp(s2))
    } else {
        m0^2 * exp(2 * s2) * (1 + sig^2) - m0^2 * exp(s2)
    }
    ratio <- mean(apply(ysim, 1, var) / vtheory)
    check(key, "TMB simulate(): mean over rows of var(y)/implied marginal var ~ 1",
          abs(ratio - 1), 0.05, "absolute")
    sim_ratio <- ratio

    ## -- logLik / objective ------------------------------------------------
    fn_opt <- obj$fn(par_opt)
    check(key, "obj$fn(par) == -logLik", abs(fn_opt + c(ll)), 1e-8, "absolute")
    check(key, "fit$fit$objective == -logLik", abs(fit$fit$objective + c(ll)), 1e-8, "absolute")
    gr_opt <- drop(obj$gr(par_opt))
    re_opt <- laplace_nll(m$family, y, X, off, g, par_opt[1:p], betad_opt, theta_opt)
    check(key, "reimpl Laplace nll (full constants) == -logLik at optimum",
          abs(re_opt$nll + c(ll)), 1e-7, "absolute")
    b_tmb <- unname(lpb_saved[names(lpb_saved) == "b"])

    ## conditional modes and conditional SDs from glmmTMB
    cv_attr <- attr(rr, "condVar")
    ## ranef(condVar = TRUE)'s attribute is a VARIANCE: the squared
    ## "Std. Error" of b from TMB::sdreport(), i.e. diag.cov.random, which
    ## adds the uncertainty of the estimated (beta, betad, theta).  The purely
    ## conditional variance 1 / H_j comes from ignore.parm.uncertainty = TRUE.
    condvar_tmb <- as.numeric(cv_attr)
    check(key, "ranef condVar == sdr$diag.cov.random", rel_diff(condvar_tmb, fit$sdr$diag.cov.random), 1e-14)
    sdr_cond <- TMB::sdreport(obj, par.fixed = par_opt, ignore.parm.uncertainty = TRUE)
    condvar_cond <- unname(sdr_cond$diag.cov.random)
    modes <- unname(rr[, 1])
    check(key, "ranef == TMB b (last.par.best)", rel_diff(modes, b_tmb), 0)
    check(key, "reimpl conditional modes == ranef", rel_diff(re_opt$b, modes), 1e-6)
    check(key, "reimpl 1/H_j == sdreport(ignore.parm.uncertainty) diag.cov.random",
          rel_diff(re_opt$condvar, condvar_cond), 1e-6)
    nh <- min(10L, length(modes))

    ## -- vcov: inverse Hessian of the Laplace objective (internal scale) ----
    Hn <- optimHess(par_opt, obj$fn, obj$gr)
    Vn <- solve(Hn)
    check(key, "vcov(full) == solve(optimHess(fn, gr))", rel_diff(diag(Vfull), diag(Vn)), 1e-6)
    check(key, "vcov(cond) == beta block of full vcov", rel_diff(V, Vfull[1:p, 1:p]), 0)
    f_re <- function(par) laplace_nll(m$family, y, X, off, g, par[1:p], par[p + 1],
                                      par[p + 2], b_start = re_opt$b)$nll
    Hr <- num_hessian(f_re, unname(par_opt))
    Vr <- solve(Hr)
    check(key, "reimpl finite-difference vcov(beta) ~ glmmTMB vcov",
          rel_diff(diag(Vr)[1:p], diag(V)), 1e-4)

    ## -- fixed non-optimal points -----------------------------------------
    pts <- lapply(seq_along(m$points), function(i) {
        pt <- m$points[[i]]
        tp <- to_internal(m$family, pt$beta, pt$re_sd, pt$dispersion)
        names(tp) <- par_names
        val <- obj$fn(tp)
        lb <- obj$env$last.par
        b_at <- unname(lb[names(lb) == "b"])
        re <- laplace_nll(m$family, y, X, off, g, pt$beta, tp[p + 1], tp[p + 2])
        check(key, sprintf("point %d: reimpl nll == obj$fn", i), abs(re$nll - val), 1e-7, "absolute")
        check(key, sprintf("point %d: reimpl modes == TMB inner modes", i),
              rel_diff(re$b, b_at), 1e-6)
        nat <- list(beta = I(pt$beta), re_sd = exp(unname(tp[p + 2])),
                    dispersion_name = disp_nat$name,
                    dispersion = if (m$family == "nbinom2") exp(unname(tp[p + 1]))
                                 else exp(-unname(tp[p + 1]) / 2))
        if (m$family == "Gamma") nat$shape <- exp(unname(tp[p + 1]))
        list(label = sprintf("point_%d", i),
             specified = list(beta = I(pt$beta), re_sd = pt$re_sd,
                              dispersion = pt$dispersion),
             tmb_par = I(unname(tp)),
             natural = nat,
             tmb_fn = val,
             loglik = -val,
             reimpl_nll = re$nll,
             reimpl_nll_expected_hessian = re$nll_expected_hessian,
             conditional_modes_head = I(re$b[seq_len(nh)]))
    })

    ## -- polished optimum: Newton steps on TMB's objective ----------------
    pp <- par_opt
    for (it in 1:5) {
        gg <- drop(obj$gr(pp))
        if (max(abs(gg)) < 1e-9) break
        pp <- pp - solve(optimHess(pp, obj$fn, obj$gr), gg)
    }
    fn_pol <- obj$fn(pp); gr_pol <- drop(obj$gr(pp))
    if (fn_pol > fn_opt + 1e-10) stop(key, ": polishing increased the objective")
    obj$fn(par_opt)  # leave obj at the reported optimum
    obj$env$last.par.best <- lpb_saved

    check(key, "predict(link) == X beta + offset + b",
          rel_diff(eta_head, head(drop(X %*% fe) + off + modes[as.integer(g)], 10)), 1e-12)

    records[[key]] <- list(
        dataset = m$dataset,
        formula = m$formula,
        family = m$family,
        link = "log",
        family_call = paste(deparse(m$family_call), collapse = ""),
        offset = m$offset_rule,
        group = m$group,
        group_rule = m$group_rule,
        nobs = as.integer(nobs(fit)),
        ngroups = nlevels(g),
        group_levels_head = I(levels(g)[seq_len(nh)]),
        dispersion = c(list(glmmtmb_sigma = sig), disp_nat[-2],
                       list(meaning = dispersion_meaning[[m$family]])),
        fixef = list(names = I(names(fe)), values = I(unname(fe))),
        fixef_se = I(unname(sqrt(diag(V)))),
        vcov = unname(V),
        re_sd = re_sd,
        re_variance = re_sd^2,
        loglik = c(ll),
        df = as.integer(attr(ll, "df")),
        aic = AIC(fit),
        bic = BIC(fit),
        objective = fit$fit$objective,
        convergence = fit$fit$convergence,
        optimizer_message = fit$fit$message,
        pdHess = isTRUE(fit$sdr$pdHess),
        tmb = list(
            par_names = I(par_names),
            par_labels = I(par_labels),
            par = I(unname(par_opt)),
            fn_at_par = fn_opt,
            gradient_at_par = I(unname(gr_opt)),
            vcov_full = unname(Vfull),
            se_full = I(unname(sqrt(diag(Vfull))))),
        polished_optimum = list(
            par = I(unname(pp)), tmb_fn = fn_pol, loglik = -fn_pol,
            max_abs_gradient = max(abs(gr_pol)),
            fixef = I(unname(pp[1:p])), re_sd = exp(unname(pp[p + 2])),
            dispersion = if (m$family == "nbinom2") exp(unname(pp[p + 1]))
                         else exp(-unname(pp[p + 1]) / 2)),
        reimpl_at_par = list(nll = re_opt$nll,
                             nll_expected_hessian = re_opt$nll_expected_hessian),
        conditional_modes = list(
            levels = I(rownames(rr)[seq_len(nh)]),
            values = I(modes[seq_len(nh)]),
            condvar_glmmtmb = I(condvar_tmb[seq_len(nh)]),
            condvar_conditional = I(condvar_cond[seq_len(nh)]),
            reimpl_values = I(re_opt$b[seq_len(nh)]),
            reimpl_condvar = I(re_opt$condvar[seq_len(nh)])),
        fitted_head = I(mu_head),
        linear_predictor_head = I(eta_head),
        objective_points = pts,
        simulation_variance_ratio = sim_ratio
    )
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    glmmtmb_version = as.character(packageDescription("glmmTMB")$Version),
    tmb_version = as.character(packageDescription("TMB")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "glmmTMBControl() defaults (nlminb)",
    objective_definition = paste(
        "TMB obj$fn(par) = -log L_Laplace(par) with all normalizing constants:",
        "-sum_j [ sum_i log f(y_ij | b_j) + log dnorm(b_j; 0, SD) + log(2 pi)/2",
        "- log(H_j)/2 ], b_j the conditional mode, H_j = -d2/db_j^2 of the joint",
        "log-density (observed, exact AD Hessian; not Fisher weights).",
        "logLik(fit) = -fit$fit$objective = -obj$fn(fit$fit$par)."),
    datasets = list(
        nbsim = list(
            description = paste("Simulated NB2 data: group = rep(1:40, each = 10),",
                                "x = round(rnorm(400), 3), b = rnorm(40, 0, 0.7),",
                                "y = rnbinom(size = 3, mu = exp(0.5 + 0.4 x + b[group]))"),
            rng = "set.seed(seed) after RNGkind('Mersenne-Twister', 'Inversion', 'Rejection'), R 4.2",
            seed = sim_seed,
            truth = list(beta = I(sim_truth$beta), re_sd = sim_truth$re_sd, k = sim_truth$k),
            group = I(as.integer(nbsim$group)),
            x = I(nbsim$x),
            y = I(nbsim$y))),
    models = records,
    verification = verification
)

writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
