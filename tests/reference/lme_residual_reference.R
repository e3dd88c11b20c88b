## Linear mixed models with residual correlation and variance functions:
## nlme's lme(), and the same likelihood written out densely.
##
## Run from the repository root:
##     Rscript tests/reference/lme_residual_reference.R
## It writes tests/reference/lme_residual.json. Per case: the data set, our
## formula and arguments, nlme's call, REML flag; nlme's log-likelihood,
## fixed effects and their SEs, sigma, the random-effect covariance (as
## lme4's theta: the lower Cholesky factor of Sigma_b / sigma^2, by column),
## the correlation and variance parameters; and at a few fixed parameter
## points (theta, corr, variance) the (restricted) log-likelihood with beta
## and sigma profiled out, computed from the dense marginal covariance
## V = Z Sigma_b Z' + sigma^2 A^1/2 R A^1/2 (checked against nlme at its optimum).

source(file.path("tests", "reference", "lme_cases.R"))

## The dense (restricted) log-likelihood with beta and sigma profiled out, at relative parameters:
## V0 = Z Lambda Lambda' Z' + A^1/2 R A^1/2 (sigma = 1), as nlme defines it for lme.
dense_loglik <- function(fit, theta, reml) {
    V0 <- relative_marginal(fit, theta)
    X <- model.matrix(fit, data = fit$data)
    y <- getResponse(fit)
    n <- length(y); p <- ncol(X)
    Vi <- solve(V0)
    XtViX <- t(X) %*% Vi %*% X
    beta <- solve(XtViX, t(X) %*% Vi %*% y)
    r <- y - X %*% beta
    rss <- drop(t(r) %*% Vi %*% r)
    dof <- if (reml) n - p else n
    ld <- as.numeric(determinant(V0)$modulus)
    ll <- -0.5 * (dof * log(2 * pi * rss / dof) + dof + ld)
    if (reml) ll <- ll - 0.5 * as.numeric(determinant(XtViX)$modulus)
    ll
}

## V0 at a parameter point: theta (lower Cholesky of Sigma_b / sigma^2), and the fit's residual structure
## moved to the given corr / variance parameters.
relative_marginal <- function(fit, theta) {
    Z <- model.matrix(formula(fit$modelStruct$reStruct)[[1]], fit$data)
    g <- getGroups(fit)
    q <- ncol(Z)
    L <- matrix(0, q, q); L[lower.tri(L, diag = TRUE)] <- theta$theta
    D <- L %*% t(L)
    n <- nrow(Z)
    V0 <- matrix(0, n, n)
    ms <- fit$modelStruct
    if (!is.null(ms$corStruct)) coef(ms$corStruct) <- theta$corr_unconstrained
    if (!is.null(ms$varStruct)) coef(ms$varStruct) <- theta$var_unconstrained
    ms$corStruct <- if (!is.null(ms$corStruct)) Initialize(ms$corStruct, fit$data) else NULL
    ms$varStruct <- if (!is.null(ms$varStruct)) Initialize(ms$varStruct, fit$data) else NULL
    sd_factor <- if (!is.null(ms$varStruct)) 1 / varWeights(ms$varStruct) else rep(1, n)
    for (lev in unique(g)) {
        i <- which(g == lev)
        R <- if (!is.null(ms$corStruct)) corMatrix(ms$corStruct)[[as.character(lev)]] else diag(length(i))
        A <- diag(sd_factor[i], length(i))
        V0[i, i] <- Z[i, , drop = FALSE] %*% D %*% t(Z[i, , drop = FALSE]) + A %*% R %*% A
    }
    V0
}

records <- list()
for (key in names(cases)) {
    case <- cases[[key]]
    fit <- fit_lme_case(case)
    sigma <- fit$sigma
    D <- as.matrix(pdMatrix(fit$modelStruct$reStruct)[[1]]) * sigma^2
    theta <- t(chol(D / sigma^2))[lower.tri(D, diag = TRUE)]
    ms <- fit$modelStruct
    corr_u <- if (!is.null(ms$corStruct)) as.numeric(coef(ms$corStruct, unconstrained = TRUE)) else numeric(0)
    var_u <- if (!is.null(ms$varStruct)) as.numeric(coef(ms$varStruct, unconstrained = TRUE)) else numeric(0)
    at_opt <- list(theta = theta, corr_unconstrained = corr_u, var_unconstrained = var_u)
    points <- list()
    with_points <- is.null(case$points) || case$points
    if (with_points) {
        ll_dense <- dense_loglik(fit, at_opt, case$reml)
        if (abs(ll_dense - as.numeric(logLik(fit))) > 1e-6)
            stop(key, ": dense log-likelihood ", ll_dense, " differs from nlme's ", as.numeric(logLik(fit)))
    }
    for (k in seq_len(if (with_points) 3 else 0)) {
        pt <- list(theta = theta * (1 + 0.15 * k * c(1, -1, 1)[seq_along(theta)]),
                   corr_unconstrained = corr_u + 0.2 * k, var_unconstrained = var_u - 0.1 * k)
        pt$loglik <- dense_loglik(fit, pt, case$reml)
        cs <- ms$corStruct; vs <- ms$varStruct
        if (!is.null(cs)) { coef(cs) <- pt$corr_unconstrained; pt$corr <- as.numeric(coef(cs, unconstrained = FALSE)) }
        if (!is.null(vs)) { coef(vs) <- pt$var_unconstrained; pt$variance <- as.numeric(coef(vs, unconstrained = FALSE)) }
        points[[k]] <- pt
    }
    records[[key]] <- list(
        data = case$data, reml = case$reml, ours = case$ours,
        loglik = as.numeric(logLik(fit)), beta = unname(fixef(fit)), coef_names = names(fixef(fit)),
        se = unname(sqrt(diag(vcov(fit)))), sigma = sigma, theta = theta,
        corr = if (!is.null(ms$corStruct)) as.numeric(coef(ms$corStruct, unconstrained = FALSE)) else numeric(0),
        variance = if (!is.null(ms$varStruct)) as.numeric(coef(ms$varStruct, unconstrained = FALSE)) else numeric(0),
        points = points)
}

## gls() with varPower() of the fitted values (nlme's default covariate).
g <- gls(weight ~ Time * Diet, data = BodyWeight, weights = varPower())
gls_cases <- list(bodyweight_power_fitted = list(
    formula = "weight ~ Time * Diet", loglik = as.numeric(logLik(g)), beta = unname(coef(g)),
    variance = as.numeric(coef(g$modelStruct$varStruct, unconstrained = FALSE))))

## bw_gaps is not a bundled data set: write its rows (our tests rebuild it the same way and check the count).
result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    nlme_version = as.character(packageVersion("nlme")),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    bw_gaps_rows = nrow(bw_gaps),
    cases = records,
    gls_cases = gls_cases
)
writeLines(to_json(result), file.path("tests", "reference", "lme_residual.json"))
flush_hex_log()
