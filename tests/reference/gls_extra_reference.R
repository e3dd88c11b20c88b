## Reference values for two parts of multilevel.gls that gls.json does not
## cover: the banded m-dependent correlation MDependent(m), and the cluster
## sandwich cov_params("robust").
##
## Run from the repository root:
##     Rscript tests/reference/gls_extra_reference.R          (a few seconds)
## It writes tests/reference/gls_extra.json.  Doubles are written so that
## they round-trip exactly (see exact_json.R).  The data are the bundled
## CSV files (Orthodont, Ovary, BodyWeight are stored in gls()'s fitting
## order, see export_gls_datasets.R), checked against nlme's copies.
##
## 1. MDependent(m) against nlme's corARMA(p = 0, q = m).  corARMA(q = m) is
##    banded (zero correlation beyond lag m) but its lag correlations are
##    functions of the MA coefficients (q = 1: rho_1 = theta / (1 + theta^2),
##    so |rho_1| <= 1/2), a subset of MDependent's free band.  So:
##      * "fixed": at several MA coefficient vectors the profiled
##        log-likelihood, sigma and coefficients of corARMA(value, fixed =
##        TRUE), with the lag correlations it implies (corMatrix); multilevel
##        evaluated at those lag correlations must give the same numbers.
##        Each is re-derived here with dense V_j and stops on disagreement.
##      * "optimum": q = 1 on Orthodont, whose optimum (rho_1 = 0.363) is
##        inside the MA(1) range, so nlme's optimum is MDependent(1)'s;
##        q = 2, 3 are at the MA boundary (theta_2 -> 1), where MDependent's
##        larger domain can only do better.
## 2. cov_params("robust") against sandwich::vcovCL.  multilevel's robust
##    covariance is the cluster (CR0) sandwich
##        (X' V^-1 X)^-1 [sum_j X_j' V_j^-1 e_j e_j' V_j^-1 X_j] (X' V^-1 X)^-1
##    with V_j the fitted working covariance (up to sigma^2), e = y - X beta,
##    no small-sample factor.  That is vcovCL(type = "HC0", cadjust = FALSE,
##    cluster = the gls groups) of the least-squares fit to the data whitened
##    by V_j^-1/2 (X_j* = L_j^-1 X_j with V_j = L_j L_j': X_j*' e_j* does not
##    depend on the choice of square root).  The whitened lm reproduces gls's
##    coefficients (checked), and the sandwich is re-derived densely.
##    vcovCL's default (HC1 with G/(G-1)) is recorded beside it.

suppressPackageStartupMessages({
    library(nlme)
    library(sandwich)
    library(jsonlite)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

out_path <- file.path("tests", "reference", "gls_extra.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")

group_of <- c(Ovary = "Mare", Orthodont = "Subject", BodyWeight = "Rat")
for (name in names(group_of)) {
    d <- read_dataset(name, data_dir)
    src <- as.data.frame(get(name, envir = asNamespace("nlme")))
    src <- src[order(src[[group_of[[name]]]], seq_len(nrow(src))), , drop = FALSE]
    if (!same_values(d, src)) stop(name, ": bundled data differ from nlme's sorted copy")
    assign(name, d, envir = globalenv())
}

verification <- list()
check <- function(key, what, value, tol) {
    verification[[length(verification) + 1L]] <<-
        list(model = key, check = what, max_discrepancy = value, tolerance = tol)
    if (!is.finite(value) || value > tol)
        stop(key, ": check failed: ", what, " (", value, " > ", tol, ")")
}
rel <- function(a, b) max(abs(as.numeric(a) - as.numeric(b)) / pmax(abs(as.numeric(b)), 1e-300))
mat_rel <- function(a, b) {
    a <- as.matrix(a); b <- as.matrix(b)
    max(abs(a - b) / sqrt(abs(outer(diag(b), diag(b)))))
}
named <- function(x) list(names = I(as.character(names(x))), values = I(unname(as.double(x))))
unname_mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }

## Per-group working covariance V_j (up to sigma^2) of a fitted gls: R_j from
## corMatrix, standard-deviation factors a_i = 1 / varWeights.
fitted_blocks <- function(fit, d, group) {
    idx <- unname(split(seq_len(nrow(d)), factor(d[[group]], levels = unique(d[[group]]))))
    cs <- fit$modelStruct$corStruct
    R <- if (is.null(cs)) lapply(idx, function(i) diag(length(i))) else corMatrix(cs)
    if (!is.list(R)) R <- list(R)
    if (!is.null(names(R)) && !identical(names(R), as.character(unique(d[[group]]))))
        stop("corMatrix blocks are not in the data's group order")
    a <- if (is.null(fit$modelStruct$varStruct)) rep(1, nrow(d)) else
        1 / varWeights(fit$modelStruct$varStruct)
    lapply(seq_along(idx), function(j) {
        i <- idx[[j]]
        if (nrow(R[[j]]) != length(i)) stop("corMatrix block size mismatch")
        list(rows = i, V = R[[j]] * outer(a[i], a[i]))
    })
}

## Dense profiled log-likelihood (nlme's definition, GLS_DEFINITIONS.md).
dense_loglik <- function(X, y, blocks, reml) {
    p <- ncol(X); N <- nrow(X)
    XtVX <- matrix(0, p, p); XtVy <- numeric(p); logdet <- 0
    for (b in blocks) {
        Vi <- solve(b$V)
        Xi <- X[b$rows, , drop = FALSE]
        XtVX <- XtVX + crossprod(Xi, Vi %*% Xi)
        XtVy <- XtVy + crossprod(Xi, Vi %*% y[b$rows])
        logdet <- logdet + as.numeric(determinant(b$V)$modulus)
    }
    beta <- drop(solve(XtVX, XtVy))
    r <- y - drop(X %*% beta)
    rss <- sum(vapply(blocks, function(b) drop(crossprod(r[b$rows], solve(b$V, r[b$rows]))), 0))
    Nr <- N - reml * p
    ll <- -0.5 * (Nr * log(2 * pi * rss / Nr) + Nr + logdet +
                  reml * as.numeric(determinant(XtVX)$modulus))
    list(loglik = ll, beta = beta, sigma = sqrt(rss / Nr), XtVX = XtVX, resid = r)
}

## ---------------------------------------------------------------------------
## 1. MDependent(m) = corARMA(q = m)
## ---------------------------------------------------------------------------
ortho_f <- distance ~ age * Sex
ortho_X <- model.matrix(ortho_f, Orthodont)
ortho_y <- Orthodont$distance

lag_correlations <- function(fit, q) {
    R <- corMatrix(fit$modelStruct$corStruct)[[1]]   # a 4-visit subject
    R[1, 1 + seq_len(q)]
}
arma_fit <- function(q, method, value = NULL) {
    cor <- if (is.null(value)) corARMA(form = ~ 1 | Subject, q = q) else
        corARMA(value, form = ~ 1 | Subject, q = q, fixed = TRUE)
    gls(ortho_f, Orthodont, correlation = cor, method = method)
}

mdep_optimum <- list()
mdep_fixed <- list()
for (q in 1:3) for (method in c("REML", "ML")) {
    key <- sprintf("orthodont_ma%d_%s", q, tolower(method))
    f <- arma_fit(q, method)
    theta <- coef(f$modelStruct$corStruct, unconstrained = FALSE)
    rho <- lag_correlations(f, q)
    V <- vcov(f)
    mdep_optimum[[key]] <- list(
        dataset = "Orthodont", formula = "distance ~ age * Sex", groups = "Subject",
        method = method, q = q,
        nlme_correlation = sprintf("corARMA(form = ~ 1 | Subject, q = %d)", q),
        ma_coefficients = I(unname(theta)),
        lag_correlations = I(unname(rho)),
        interior = q == 1,
        loglik = c(logLik(f)),
        loglik_df = as.integer(attr(logLik(f), "df")),
        sigma = f$sigma,
        coefficients = named(coef(f)),
        se = I(unname(sqrt(diag(V)))),
        vcov = unname_mat(V))
    ## fixed evaluations: nlme's optimum and two other MA vectors
    pts <- list(unname(theta), rep(0.3, q) / seq_len(q), c(-0.4, rep(0.2, q - 1)))
    for (k in seq_along(pts)) {
        th <- pts[[k]]
        g <- arma_fit(q, method, th)
        r <- lag_correlations(g, q)
        dl <- dense_loglik(ortho_X, ortho_y, fitted_blocks(g, Orthodont, "Subject"), method == "REML")
        check(key, "dense loglik = nlme (fixed corARMA)", rel(dl$loglik, c(logLik(g))), 1e-11)
        check(key, "dense coefficients = nlme", rel(dl$beta, coef(g)), 1e-10)
        check(key, "dense sigma = nlme", rel(dl$sigma, g$sigma), 1e-11)
        ## the band: zero beyond lag q, Toeplitz within it
        R <- corMatrix(g$modelStruct$corStruct)[[1]]
        band <- abs(row(R) - col(R))
        check(key, "corARMA(q) is banded Toeplitz",
              max(abs(R - ifelse(band == 0, 1, ifelse(band <= q, c(0, r)[pmin(band, q) + 1], 0)))),
              1e-15)
        mdep_fixed[[length(mdep_fixed) + 1L]] <- list(
            model = key, q = q, method = method,
            ma_coefficients = I(th), lag_correlations = I(unname(r)),
            loglik = c(logLik(g)), sigma = g$sigma, coefficients = I(unname(coef(g))))
    }
}

## ---------------------------------------------------------------------------
## 2. Robust covariance = sandwich::vcovCL on the whitened data
## ---------------------------------------------------------------------------
robust_specs <- list(
    orthodont_cs_reml = list(dataset = "Orthodont", formula = "distance ~ age * Sex",
        groups = "Subject", method = "REML", time = NULL,
        corr = list(type = "exchangeable", nlme = quote(corCompSymm(form = ~ 1 | Subject))),
        var = NULL),
    orthodont_ma1_ml = list(dataset = "Orthodont", formula = "distance ~ age * Sex",
        groups = "Subject", method = "ML", time = NULL,
        corr = list(type = "m-dependent", m = 1L,
                    nlme = quote(corARMA(form = ~ 1 | Subject, q = 1))),
        var = NULL),
    orthodont_indep_varident_reml = list(dataset = "Orthodont", formula = "distance ~ age + Sex",
        groups = "Subject", method = "REML", time = NULL, corr = NULL,
        var = list(type = "ident", stratum = "Sex", nlme = quote(varIdent(form = ~ 1 | Sex)))),
    ovary_ar1_reml = list(dataset = "Ovary", formula = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time)",
        groups = "Mare", method = "REML", time = NULL,
        corr = list(type = "ar1", nlme = quote(corAR1(form = ~ 1 | Mare))), var = NULL),
    bodyweight_car1_varident_reml = list(dataset = "BodyWeight", formula = "weight ~ Time * Diet",
        groups = "Rat", method = "REML", time = "Time",
        corr = list(type = "car1", nlme = quote(corCAR1(form = ~ Time | Rat))),
        var = list(type = "ident", stratum = "Diet", nlme = quote(varIdent(form = ~ 1 | Diet))))
)

robust <- list()
for (key in names(robust_specs)) {
    s <- robust_specs[[key]]
    d <- get(s$dataset)
    fml <- as.formula(s$formula, env = globalenv())
    cl <- call("gls", model = fml, data = as.name(s$dataset), method = s$method)
    if (!is.null(s$corr)) cl$correlation <- s$corr$nlme
    if (!is.null(s$var)) cl$weights <- s$var$nlme
    f <- eval(cl, globalenv())
    X <- model.matrix(fml, d)
    y <- eval(fml[[2]], d)
    blocks <- fitted_blocks(f, d, s$groups)   # without a correlation: R_j = I per group
    ## whiten by the lower Cholesky factor of each V_j
    Xs <- X; ys <- y
    for (b in blocks) {
        L <- t(chol(b$V))
        Xs[b$rows, ] <- forwardsolve(L, X[b$rows, , drop = FALSE])
        ys[b$rows] <- forwardsolve(L, y[b$rows])
    }
    cluster <- d[[s$groups]]
    wl <- lm(ys ~ Xs - 1)
    check(key, "whitened lm coefficients = gls", rel(coef(wl), coef(f)), 1e-9)
    cr0 <- vcovCL(wl, cluster = cluster, type = "HC0", cadjust = FALSE)
    cr1 <- vcovCL(wl, cluster = cluster)
    ## dense re-derivation at gls's own coefficients
    dl <- dense_loglik(X, y, blocks, s$method == "REML")
    check(key, "dense loglik = nlme", rel(dl$loglik, c(logLik(f))), 1e-10)
    e <- y - drop(X %*% coef(f))
    meat <- matrix(0, ncol(X), ncol(X))
    for (b in blocks) {
        u <- crossprod(X[b$rows, , drop = FALSE], solve(b$V, e[b$rows]))
        meat <- meat + tcrossprod(u)
    }
    bread <- solve(dl$XtVX)
    dense <- bread %*% meat %*% bread
    check(key, "vcovCL(HC0, cadjust = FALSE) = dense cluster sandwich", mat_rel(cr0, dense), 1e-9)
    G <- length(unique(cluster)); N <- nrow(X); p <- ncol(X)
    check(key, "vcovCL default = HC0 * G/(G-1) * (N-1)/(N-p)",
          mat_rel(cr1, cr0 * G / (G - 1) * (N - 1) / (N - p)), 1e-12)
    cs <- f$modelStruct$corStruct
    corr_params <- if (is.null(cs)) numeric(0) else if (s$corr$type == "m-dependent")
        corMatrix(cs)[[1]][1, 1 + seq_len(s$corr$m)] else coef(cs, unconstrained = FALSE)
    vs <- f$modelStruct$varStruct
    robust[[key]] <- list(
        dataset = s$dataset, formula = s$formula, groups = s$groups, time = s$time,
        method = s$method,
        correlation = if (is.null(s$corr)) NULL else
            list(type = s$corr$type, m = s$corr$m, nlme = deparse(s$corr$nlme)),
        variance = if (is.null(s$var)) NULL else
            list(type = s$var$type, stratum = s$var$stratum, nlme = deparse(s$var$nlme)),
        corr_params = I(unname(corr_params)),
        variance_params = named(if (is.null(vs)) numeric(0) else coef(vs, unconstrained = FALSE)),
        loglik = c(logLik(f)),
        coefficients = named(coef(f)),
        n_clusters = G,
        vcov_model = unname_mat(vcov(f)),
        vcov_robust = unname_mat(cr0),
        se_robust = I(unname(sqrt(diag(cr0)))),
        vcov_cl_default = unname_mat(cr1))
    for (nm in c("time", "correlation", "variance")) robust[[key]][nm] <- list(robust[[key]][[nm]])
    cat(sprintf("%-32s logLik %.6f  robust SE %s\n", key, c(logLik(f)),
                paste(format(sqrt(diag(cr0)), digits = 6), collapse = " ")))
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    nlme_version = as.character(packageDescription("nlme")$Version),
    sandwich_version = as.character(packageDescription("sandwich")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    mdependent_optimum = mdep_optimum,
    mdependent_fixed = mdep_fixed,
    robust = robust,
    verification = verification
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
