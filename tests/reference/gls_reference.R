## Reference fits of linear marginal models with nlme::gls().
##
## Run from the repository root (after tests/reference/export_gls_datasets.R):
##     Rscript tests/reference/gls_reference.R
## It writes tests/reference/gls.json.  The meaning of every field, and the
## exact definitions nlme uses, are in tests/reference/GLS_DEFINITIONS.md.
## Doubles are written so that they round-trip exactly (see exact_json.R).
##
## The data are read back from the bundled CSV files
## (python/multilevel/datasets/data/), so every per-row output refers to the
## rows exactly as stored there.  Ovary, Orthodont and BodyWeight are stored
## in gls()'s internal fitting order (sorted by the grouping factor, see
## export_gls_datasets.R); sleepstudy already is in that order.
##
## Besides recording nlme's output, the script re-derives everything from an
## independent implementation written here from the definitions in
## GLS_DEFINITIONS.md (dense V_j = A_j^1/2 R_j A_j^1/2, no nlme internals):
## the log-likelihood at the optimum and at fixed parameter values, sigma,
## the coefficients and their covariance, the normalized residuals, the
## approximate covariance matrix 'apVar' and the intervals().  It stops if
## any of these disagree with nlme beyond the tolerances below, and it
## records the largest discrepancies under "verification" in gls.json.

suppressPackageStartupMessages({
    library(nlme)
    library(jsonlite)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

out_path <- file.path("tests", "reference", "gls.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")

## Data: the bundled CSV + schema, rebuilt as R columns (dataset_writer.R).
read_bundled <- function(name) read_dataset(name, data_dir)


group_of <- c(Ovary = "Mare", Orthodont = "Subject", BodyWeight = "Rat",
              sleepstudy = "Subject")
for (name in names(group_of)) {
    d <- read_bundled(name)
    src <- if (name == "sleepstudy") lme4::sleepstudy else
        get(name, envir = asNamespace("nlme"))
    src <- as.data.frame(src)
    src <- src[order(src[[group_of[[name]]]], seq_len(nrow(src))), , drop = FALSE]
    if (!same_values(d, src))
        stop(name, ": bundled data differ from the source sorted by ",
             group_of[[name]])
    if (!identical(order(d[[group_of[[name]]]]), seq_len(nrow(d))))
        stop(name, ": bundled data are not in gls()'s fitting order")
    assign(name, d, envir = globalenv())
}

## ---------------------------------------------------------------------------
## Model specifications.
## corr: type in ar1 (corAR1, position within group), car1 (corCAR1, time
##       covariate), exchangeable (corCompSymm), unstructured (corSymm,
##       position within group); group / time columns.
## var:  type in ident (varIdent by a factor/stratum column), power
##       (varPower(form = ~ covariate)), exp (varExp(form = ~ covariate));
##       'covariate' is an R expression over the data, 'covariate_rule' the
##       same in Python syntax.
## fixed: two non-optimal parameter points (constrained scale) at which the
##       profiled log-likelihood is also recorded.
## ---------------------------------------------------------------------------
ovary_f <- "follicles ~ sin(2*pi*Time) + cos(2*pi*Time)"
ortho_f <- "distance ~ age * Sex"
bw_f <- "weight ~ Time * Diet"
sleep_f <- "Reaction ~ Days"

c_ar1_mare <- list(type = "ar1", group = "Mare", time = NULL)
c_ar1_subj <- list(type = "ar1", group = "Subject", time = NULL)
c_cs_subj <- list(type = "exchangeable", group = "Subject", time = NULL)
c_symm_subj <- list(type = "unstructured", group = "Subject", time = NULL)
c_car1_rat <- list(type = "car1", group = "Rat", time = "Time")
## corAR1 with an integer time covariate that has gaps: nlme turns it into
## corARMA(p = 1, q = 0), correlation Phi^|t_i - t_k|.
c_ar1_days <- list(type = "ar1", group = "Subject", time = "Days")
v_ident_sex <- list(type = "ident", stratum = "Sex")
v_ident_age <- list(type = "ident", stratum = "age")
v_ident_diet <- list(type = "ident", stratum = "Diet")
v_power_age <- list(type = "power", covariate = "age", covariate_rule = "age")
v_power_time <- list(type = "power", covariate = "Time", covariate_rule = "Time")
v_power_days1 <- list(type = "power", covariate = "I(Days + 1)",
                      covariate_rule = "Days + 1")
v_exp_days <- list(type = "exp", covariate = "Days", covariate_rule = "Days")

spec <- function(dataset, formula, method, corr = NULL, var = NULL,
                 fixed = list(), subset = NULL) {
    list(dataset = dataset, formula = formula, method = method,
         corr = corr, var = var, fixed = fixed, subset = subset)
}
pt <- function(corr = NULL, var = NULL) list(corr = corr, var = var)

symm_a <- c(0.5, 0.4, 0.3, 0.5, 0.4, 0.5)
symm_b <- c(0.7, 0.6, 0.5, 0.7, 0.6, 0.7)

models <- list(
    ovary_ar1_reml = spec("Ovary", ovary_f, "REML", c_ar1_mare,
                          fixed = list(pt(0.3), pt(0.9))),
    ovary_ar1_ml = spec("Ovary", ovary_f, "ML", c_ar1_mare,
                        fixed = list(pt(0.3), pt(0.9))),
    ovary_indep_reml = spec("Ovary", ovary_f, "REML"),
    ovary_indep_ml = spec("Ovary", ovary_f, "ML"),
    orthodont_cs_reml = spec("Orthodont", ortho_f, "REML", c_cs_subj,
                             fixed = list(pt(0.2), pt(0.8))),
    orthodont_cs_ml = spec("Orthodont", ortho_f, "ML", c_cs_subj,
                           fixed = list(pt(0.2), pt(0.8))),
    orthodont_cs_varident_reml = spec("Orthodont", ortho_f, "REML", c_cs_subj,
        v_ident_sex, fixed = list(pt(0.5, c(Female = 0.8)),
                                  pt(0.7, c(Female = 1.2)))),
    orthodont_cs_varident_ml = spec("Orthodont", ortho_f, "ML", c_cs_subj,
        v_ident_sex, fixed = list(pt(0.5, c(Female = 0.8)),
                                  pt(0.7, c(Female = 1.2)))),
    orthodont_symm_reml = spec("Orthodont", ortho_f, "REML", c_symm_subj,
                               fixed = list(pt(symm_a), pt(symm_b))),
    orthodont_symm_ml = spec("Orthodont", ortho_f, "ML", c_symm_subj,
                             fixed = list(pt(symm_a), pt(symm_b))),
    orthodont_symm_varident_reml = spec("Orthodont", ortho_f, "REML",
        c_symm_subj, v_ident_age,
        fixed = list(pt(symm_a, c("10" = 0.9, "12" = 1.1, "14" = 1.0)),
                     pt(symm_b, c("10" = 1.2, "12" = 1.3, "14" = 1.5)))),
    orthodont_cs_varpower_reml = spec("Orthodont", ortho_f, "REML", c_cs_subj,
        v_power_age, fixed = list(pt(0.5, 0.2), pt(0.7, -0.3))),
    bodyweight_car1_reml = spec("BodyWeight", bw_f, "REML", c_car1_rat,
                                fixed = list(pt(0.5), pt(0.95))),
    bodyweight_car1_ml = spec("BodyWeight", bw_f, "ML", c_car1_rat,
                              fixed = list(pt(0.5), pt(0.95))),
    bodyweight_car1_varident_reml = spec("BodyWeight", bw_f, "REML",
        c_car1_rat, v_ident_diet,
        fixed = list(pt(0.9, c("2" = 1.5, "3" = 2.0)),
                     pt(0.99, c("2" = 1.2, "3" = 2.5)))),
    bodyweight_varpower_reml = spec("BodyWeight", bw_f, "REML", NULL,
        v_power_time, fixed = list(pt(NULL, 0.1), pt(NULL, -0.2))),
    sleepstudy_varexp_reml = spec("sleepstudy", sleep_f, "REML", NULL,
        v_exp_days, fixed = list(pt(NULL, 0.05), pt(NULL, 0.15))),
    sleepstudy_ar1_varexp_reml = spec("sleepstudy", sleep_f, "REML",
        c_ar1_subj, v_exp_days, fixed = list(pt(0.5, 0.05), pt(0.8, 0.12))),
    sleepstudy_ar1_varexp_ml = spec("sleepstudy", sleep_f, "ML",
        c_ar1_subj, v_exp_days, fixed = list(pt(0.5, 0.05), pt(0.8, 0.12))),
    sleepstudy_ar1_varpower_reml = spec("sleepstudy", sleep_f, "REML",
        c_ar1_subj, v_power_days1, fixed = list(pt(0.6, 0.2), pt(0.85, 0.4))),
    ## 'subset' is an expression over the columns, valid in R and Python.
    sleepstudy_ar1_gaps_reml = spec("sleepstudy", sleep_f, "REML", c_ar1_days,
        fixed = list(pt(0.5), pt(0.9)), subset = "Days != 3")
)

## Likelihood-ratio tests with anova(fit1, fit2): (smaller, larger) model.
lrts <- list(
    ovary_ar1_vs_indep_reml = c("ovary_indep_reml", "ovary_ar1_reml"),
    ovary_ar1_vs_indep_ml = c("ovary_indep_ml", "ovary_ar1_ml"),
    orthodont_varident_vs_cs_reml = c("orthodont_cs_reml", "orthodont_cs_varident_reml"),
    orthodont_symm_vs_cs_ml = c("orthodont_cs_ml", "orthodont_symm_ml"),
    bodyweight_varident_vs_car1_reml = c("bodyweight_car1_reml", "bodyweight_car1_varident_reml")
)

## ---------------------------------------------------------------------------
## Building the nlme structures.
## ---------------------------------------------------------------------------
corr_form <- function(corr) {
    cov <- if (is.null(corr$time)) "1" else corr$time
    as.formula(paste("~", cov, "|", corr$group), env = globalenv())
}
corr_nlme_text <- function(corr) {
    if (is.null(corr)) return(NULL)
    fun <- switch(corr$type, ar1 = "corAR1", car1 = "corCAR1",
                  exchangeable = "corCompSymm", unstructured = "corSymm")
    cov <- if (is.null(corr$time)) "1" else corr$time
    sprintf("%s(form = ~ %s | %s)", fun, cov, corr$group)
}
var_form <- function(var) {
    rhs <- if (var$type == "ident") paste("1 |", var$stratum) else var$covariate
    as.formula(paste("~", rhs), env = globalenv())
}
var_nlme_text <- function(var) {
    if (is.null(var)) return(NULL)
    fun <- switch(var$type, ident = "varIdent", power = "varPower", exp = "varExp")
    rhs <- if (var$type == "ident") paste("1 |", var$stratum) else var$covariate
    sprintf("%s(form = ~ %s)", fun, rhs)
}
## value: NULL (free, nlme's default start) or constrained values to fix.
make_corr <- function(corr, value = NULL) {
    if (is.null(corr)) return(NULL)
    fixed <- !is.null(value)
    form <- corr_form(corr)
    switch(corr$type,
        ar1 = if (fixed) corAR1(value, form = form, fixed = TRUE) else corAR1(form = form),
        car1 = if (fixed) corCAR1(value, form = form, fixed = TRUE) else corCAR1(form = form),
        exchangeable = if (fixed) corCompSymm(value, form = form, fixed = TRUE) else
            corCompSymm(form = form),
        unstructured = if (fixed) corSymm(value, form = form, fixed = TRUE) else
            corSymm(form = form))
}
make_var <- function(var, value = NULL) {
    if (is.null(var)) return(NULL)
    form <- var_form(var)
    switch(var$type,
        ident = if (is.null(value)) varIdent(form = form) else
            varIdent(form = form, fixed = value),
        power = if (is.null(value)) varPower(form = form) else
            varPower(form = form, fixed = value),
        exp = if (is.null(value)) varExp(form = form) else
            varExp(form = form, fixed = value))
}
gls_call <- function(m, corr_value = NULL, var_value = NULL) {
    cl <- call("gls", model = as.formula(m$formula, env = globalenv()),
               data = as.name(m$dataset), method = m$method)
    if (!is.null(m$corr)) cl$correlation <- make_corr(m$corr, corr_value)
    if (!is.null(m$var)) cl$weights <- make_var(m$var, var_value)
    if (!is.null(m$subset)) cl$subset <- parse(text = m$subset)[[1]]
    cl
}
model_data <- function(m) {
    d <- get(m$dataset, envir = globalenv())
    if (!is.null(m$subset)) {
        d <- d[eval(parse(text = m$subset)[[1]], d), , drop = FALSE]
        rownames(d) <- NULL
    }
    d
}

## ---------------------------------------------------------------------------
## Independent implementation (see GLS_DEFINITIONS.md).
## ---------------------------------------------------------------------------
blocks_of <- function(d, corr) {
    if (is.null(corr)) return(list(seq_len(nrow(d))))
    unname(split(seq_len(nrow(d)), d[[corr$group]], drop = TRUE))
}
## Within-group correlation matrix for the rows idx (constrained params).
corr_matrix <- function(corr, par, d, idx) {
    n <- length(idx)
    if (is.null(corr)) return(diag(n))
    pos <- seq_len(n)  # position within the group, in data order
    switch(corr$type,
        ar1 = if (is.null(corr$time)) par^abs(outer(pos, pos, "-")) else {
            t <- d[[corr$time]][idx]; par^abs(outer(t, t, "-")) },
        car1 = { t <- d[[corr$time]][idx]; par^abs(outer(t, t, "-")) },
        exchangeable = { R <- matrix(par, n, n); diag(R) <- 1; R },
        unstructured = {
            M <- round((1 + sqrt(1 + 8 * length(par))) / 2)
            C <- diag(M)
            C[lower.tri(C)] <- par        # column-major lower triangle
            C <- C + t(C) - diag(M)
            C[pos, pos, drop = FALSE]
        })
}
## Standard-deviation multipliers a_i (Var(e_i) = sigma^2 a_i^2).
var_sd <- function(var, par, d) {
    if (is.null(var)) return(rep(1, nrow(d)))
    switch(var$type,
        ident = {
            s <- as.character(d[[var$stratum]])
            ratio <- c(1, par)
            names(ratio) <- c(var_reference(var, d), names(par))
            unname(ratio[s])
        },
        power = abs(eval(parse(text = var$covariate)[[1]], d))^par,
        exp = exp(par * eval(parse(text = var$covariate)[[1]], d)))
}
var_reference <- function(var, d) as.character(d[[var$stratum]])[1]

## Pieces of the likelihood for given constrained parameters (dense V).
gls_pieces <- function(m, d, cpar, vpar) {
    y <- eval(as.formula(m$formula)[[2]], d)
    X <- model.matrix(as.formula(m$formula), d)
    a <- var_sd(m$var, vpar, d)
    p <- ncol(X); N <- nrow(X)
    XtVX <- matrix(0, p, p); XtVy <- numeric(p); logdetV <- 0
    Vinv <- list()
    blocks <- blocks_of(d, m$corr)
    for (b in seq_along(blocks)) {
        idx <- blocks[[b]]
        R <- corr_matrix(m$corr, cpar, d, idx)
        V <- R * outer(a[idx], a[idx])
        Vi <- solve(V)
        Vinv[[b]] <- Vi
        XtVX <- XtVX + crossprod(X[idx, , drop = FALSE], Vi %*% X[idx, , drop = FALSE])
        XtVy <- XtVy + crossprod(X[idx, , drop = FALSE], Vi %*% y[idx])
        logdetV <- logdetV + as.numeric(determinant(V, logarithm = TRUE)$modulus)
    }
    beta <- solve(XtVX, XtVy)
    r <- y - X %*% beta
    RSS <- 0
    for (b in seq_along(blocks)) {
        idx <- blocks[[b]]
        RSS <- RSS + as.numeric(crossprod(r[idx], Vinv[[b]] %*% r[idx]))
    }
    list(y = y, X = X, a = a, N = N, p = p, beta = drop(beta), resid = drop(r),
         RSS = RSS, logdetV = logdetV, XtVX = XtVX,
         logdetXtVX = as.numeric(determinant(XtVX, logarithm = TRUE)$modulus),
         logdetXtX = as.numeric(determinant(crossprod(X), logarithm = TRUE)$modulus),
         blocks = blocks)
}
## Profiled log-likelihood (sigma profiled out), nlme's definition.
own_loglik <- function(pc, reml) {
    Nr <- pc$N - reml * pc$p
    s2 <- pc$RSS / Nr
    -0.5 * (Nr * log(2 * pi * s2) + Nr + pc$logdetV + reml * pc$logdetXtVX)
}
## Log-likelihood at a given sigma (not profiled), nlme's definition.
own_loglik_sigma <- function(pc, reml, sigma) {
    Nr <- pc$N - reml * pc$p
    -0.5 * (Nr * log(2 * pi * sigma^2) + pc$RSS / sigma^2 + pc$logdetV +
            reml * pc$logdetXtVX)
}
## The same profiled log-likelihood via the whitening nlme uses (lower
## Cholesky factor of R_j, weights 1/a_i, QR of the whitened [X y]).
own_loglik_whitened <- function(m, d, cpar, vpar, reml) {
    y <- eval(as.formula(m$formula)[[2]], d)
    X <- model.matrix(as.formula(m$formula), d)
    a <- var_sd(m$var, vpar, d)
    Xy <- cbind(X, y) / a
    logdetR <- 0
    for (idx in blocks_of(d, m$corr)) {
        R <- corr_matrix(m$corr, cpar, d, idx)
        L <- t(chol(R))
        Xy[idx, ] <- forwardsolve(L, Xy[idx, , drop = FALSE])
        logdetR <- logdetR + 2 * sum(log(diag(L)))
    }
    N <- nrow(X); p <- ncol(X); Nr <- N - reml * p
    Rq <- qr.R(qr(Xy))
    RSS <- Rq[p + 1, p + 1]^2
    -Nr / 2 * (log(2 * pi * RSS / Nr) + 1) - 0.5 * logdetR - sum(log(a)) -
        reml * sum(log(abs(diag(Rq)[1:p])))
}

## nlme's unconstrained transformations (constrained <-> unconstrained).
symm_from_unc <- function(u) {
    k <- length(u); M <- round((1 + sqrt(1 + 8 * k)) / 2)
    U <- matrix(0, M, M); U[1, 1] <- 1; pos <- 1
    for (i in 2:M) {
        aux <- 1
        for (j in 1:(i - 1)) {
            ang <- pi * exp(u[pos]) / (1 + exp(u[pos])); pos <- pos + 1
            U[j, i] <- aux * cos(ang); aux <- aux * sin(ang)
        }
        U[i, i] <- aux
    }
    C <- crossprod(U)
    C[lower.tri(C)]
}
symm_to_unc <- function(r) {
    M <- round((1 + sqrt(1 + 8 * length(r))) / 2)
    C <- diag(M); C[lower.tri(C)] <- r; C <- C + t(C) - diag(M)
    U <- chol(C); u <- numeric(0)
    for (i in 2:M) {
        ang <- acos(U[1:(i - 1), i] / sqrt(cumsum(U[i:1, i]^2)[i:2]))
        u <- c(u, log(ang / (pi - ang)))
    }
    u
}
corr_to_unc <- function(corr, par, maxlen, natural = FALSE) {
    switch(corr$type,
        ar1 = log((1 + par) / (1 - par)),
        car1 = log(par / (1 - par)),
        exchangeable = { inf <- -1 / (maxlen - 1); log((par - inf) / (1 - par)) },
        unstructured = if (natural) log((1 + par) / (1 - par)) else symm_to_unc(par))
}
corr_from_unc <- function(corr, u, maxlen, natural = FALSE) {
    switch(corr$type,
        ar1 = (exp(u) - 1) / (exp(u) + 1),
        car1 = exp(u) / (1 + exp(u)),
        exchangeable = { inf <- -1 / (maxlen - 1); (exp(u) + inf) / (exp(u) + 1) },
        unstructured = if (natural) (exp(u) - 1) / (exp(u) + 1) else symm_from_unc(u))
}
var_to_unc <- function(var, par) if (var$type == "ident") log(par) else par
var_from_unc <- function(var, u) if (var$type == "ident") exp(u) else u

## nlme::fdHess in closed form (the exact quadratic through its design points).
fd_hess <- function(x, f, rel_step = .Machine$double.eps^(1/3), min_abs = 0.05) {
    k <- length(x)
    h <- pmax(abs(x), min_abs) * rel_step
    e <- function(i) replace(numeric(k), i, h[i])
    f0 <- f(x)
    fp <- vapply(1:k, function(i) f(x + e(i)), 0)
    fm <- vapply(1:k, function(i) f(x - e(i)), 0)
    H <- diag((fp + fm - 2 * f0) / h^2, k)
    if (k > 1) for (i in 1:(k - 1)) for (j in (i + 1):k)
        H[i, j] <- H[j, i] <- (f(x + e(i) + e(j)) - fp[i] - fp[j] + f0) / (h[i] * h[j])
    H
}
## apVar: nlme's recipe re-implemented on the own likelihood.
own_apvar <- function(m, d, cpar, vpar, sigma, reml, maxlen) {
    nc <- if (is.null(m$corr)) 0 else length(cpar)
    nv <- if (is.null(m$var)) 0 else length(vpar)
    pars <- c(if (nc) corr_to_unc(m$corr, cpar, maxlen, natural = TRUE),
              if (nv) var_to_unc(m$var, vpar), log(sigma))
    f <- function(q) {
        cp <- if (nc) corr_from_unc(m$corr, q[seq_len(nc)], maxlen, natural = TRUE)
        vp <- if (nv) { v <- var_from_unc(m$var, q[nc + seq_len(nv)]); names(v) <- names(vpar); v }
        pc <- gls_pieces(m, d, cp, vp)
        own_loglik_sigma(pc, reml, exp(q[length(q)]))
    }
    H <- fd_hess(pars, f)
    list(pars = pars, apvar = solve(-H), nc = nc, nv = nv, f = f)
}
## An accurate Hessian (central differences with step h and h/2 on the
## unconstrained scale, Richardson-extrapolated; relative accuracy ~1e-8 on
## these models), for comparison with nlme's finite-difference apVar.
rich_hessian <- function(f, x, h = 2e-3) {
    k <- length(x)
    hs <- function(h) {
        H <- matrix(0, k, k)
        for (i in 1:k) for (j in i:k) {
            ei <- replace(numeric(k), i, h); ej <- replace(numeric(k), j, h)
            H[i, j] <- H[j, i] <- (f(x + ei + ej) - f(x + ei - ej) -
                                   f(x - ei + ej) + f(x - ei - ej)) / (4 * h^2)
        }
        H
    }
    (4 * hs(h / 2) - hs(h)) / 3
}
own_intervals <- function(m, ap, maxlen, level = 0.95) {
    z <- qnorm((1 + level) / 2)
    se <- sqrt(diag(ap$apvar))
    q <- ap$pars
    tab <- cbind(lower = q - z * se, est = q, upper = q + z * se)
    out <- list()
    if (ap$nc) out$corr <- apply(tab[seq_len(ap$nc), , drop = FALSE], 2,
        function(u) corr_from_unc(m$corr, u, maxlen, natural = TRUE))
    if (ap$nv) out$var <- apply(tab[ap$nc + seq_len(ap$nv), , drop = FALSE], 2,
        function(u) var_from_unc(m$var, u))
    out$sigma <- exp(tab[nrow(tab), ])
    lapply(out, function(x) matrix(x, ncol = 3))
}
## Normalized residuals: nlme whitens e_j = r_j / (sigma a_j) with
## t(chol(R_j))^{-1} (inverse lower Cholesky factor) -- except for
## corCompSymm, which uses the explicit factor below (Helmert rows scaled by
## the eigenvalues of R_j).
cs_factor <- function(rho, n) {
    F <- matrix(0, n, n)
    F[1, ] <- 1 / sqrt(n * (1 + (n - 1) * rho))
    if (n > 1) for (i in 2:n) {
        k <- i - 1
        F[i, 1:k] <- -1 / sqrt((1 - rho) * k * (k + 1))
        F[i, i] <- k / sqrt((1 - rho) * k * (k + 1))
    }
    F
}
own_normalized <- function(m, d, cpar, pc, sigma, cs_cholesky = FALSE) {
    e <- pc$resid / (sigma * pc$a)
    if (is.null(m$corr)) return(e)
    out <- e
    for (idx in pc$blocks) {
        if (m$corr$type == "exchangeable" && !cs_cholesky) {
            out[idx] <- cs_factor(cpar, length(idx)) %*% e[idx]
        } else {
            R <- corr_matrix(m$corr, cpar, d, idx)
            out[idx] <- forwardsolve(t(chol(R)), e[idx])
        }
    }
    out
}

## ---------------------------------------------------------------------------
## Fitting and recording.
## ---------------------------------------------------------------------------
rel_diff <- function(a, b) max(abs(a - b) / pmax(abs(b), 1e-300))
abs_diff <- function(a, b) max(abs(a - b))
## Matrices: largest absolute difference relative to the largest entry.
norm_diff <- function(a, b) max(abs(a - b)) / max(abs(b))
tol_ll <- 1e-10       # relative, log-likelihoods (own vs nlme)
tol_par <- 1e-9       # relative, sigma / beta / vcov (own vs nlme)
tol_res <- 1e-10      # absolute, normalized residuals
## nlme's apVar is a finite-difference Hessian with a tiny step: its
## rounding error is ~1e-4 .. 3e-2 (relative) on these models, and a
## re-implementation of the same recipe has an error of the same size but
## different sign.  These two tolerances are therefore loose; the exact parts
## of the recipe (the parameter vector, the transformation back) are checked
## tightly, and an accurate apVar is recorded alongside nlme's.
tol_apvar <- 0.05     # relative to max |entry|, own fdHess vs nlme apVar
tol_int <- 0.05       # relative to the interval width
tol_int_exact <- 1e-10

verification <- list()
note_check <- function(key, what, value, tol) {
    verification[[length(verification) + 1L]] <<- list(model = key, check = what,
                                                       max_discrepancy = value,
                                                       tolerance = tol)
    if (!is.finite(value) || value > tol)
        stop(key, ": ", what, " discrepancy ", format(value), " > ", tol)
}

named_list <- function(x) list(names = I(names(x)), values = I(unname(x)))
interval_rows <- function(tab) {
    tab <- as.matrix(tab)
    list(names = I(rownames(tab)), lower = I(unname(tab[, 1])),
         est = I(unname(tab[, 2])), upper = I(unname(tab[, 3])))
}

fits <- list()
fit_record <- function(key, m) {
    cat(sprintf("fitting %-32s %s\n", key, m$method))
    d <- model_data(m)
    fit <- eval(gls_call(m), globalenv())
    fits[[key]] <<- fit
    reml <- as.integer(m$method == "REML")
    ms <- fit$modelStruct
    cSt <- ms$corStruct; vSt <- ms$varStruct
    cpar <- if (!is.null(cSt)) coef(cSt, unconstrained = FALSE) else NULL
    vpar <- if (!is.null(vSt)) coef(vSt, unconstrained = FALSE) else NULL
    maxlen <- max(lengths(blocks_of(d, m$corr)))
    if (!is.null(m$corr) && m$corr$type == "unstructured") {
        M <- attr(cSt, "maxCov")
        nm <- outer(1:M, 1:M, function(i, j) sprintf("cor(%d,%d)", j, i))
        names(cpar) <- nm[lower.tri(nm)]
    }

    ## --- own re-derivation at the optimum ---
    pc <- gls_pieces(m, d, unname(cpar), vpar)
    ll <- logLik(fit)
    note_check(key, "loglik (dense V) vs logLik(fit), relative",
               rel_diff(own_loglik(pc, reml), as.numeric(ll)), tol_ll)
    note_check(key, "loglik (whitened QR) vs logLik(fit), relative",
               rel_diff(own_loglik_whitened(m, d, unname(cpar), vpar, reml),
                        as.numeric(ll)), tol_ll)
    Nr <- pc$N - reml * pc$p
    note_check(key, "sigma = sqrt(RSS/(N - REML*p)), relative",
               rel_diff(sqrt(pc$RSS / Nr), fit$sigma), tol_par)
    note_check(key, "coefficients, relative",
               rel_diff(pc$beta, coef(fit)), tol_par)
    V_own <- pc$RSS / (pc$N - pc$p) * solve(pc$XtVX)
    note_check(key, "vcov = RSS/(N-p) (X'V^-1X)^-1, relative to max |entry|",
               norm_diff(V_own, unname(vcov(fit))), tol_par)
    df <- attr(ll, "df")
    note_check(key, "AIC = -2ll + 2df, BIC = -2ll + df log(N - REML p)",
               max(abs(AIC(fit) - (-2 * as.numeric(ll) + 2 * df)),
                   abs(BIC(fit) - (-2 * as.numeric(ll) + df * log(Nr)))), 1e-9)
    nres <- unname(residuals(fit, type = "normalized"))
    own_nres <- own_normalized(m, d, unname(cpar), pc, fit$sigma)
    note_check(key, "normalized residuals, absolute", abs_diff(own_nres, nres), tol_res)
    pres <- unname(residuals(fit, type = "pearson"))
    note_check(key, "pearson residuals r/(sigma a), absolute",
               abs_diff(pc$resid / (fit$sigma * pc$a), pres), tol_res)
    if (!is.null(m$corr) && m$corr$type == "exchangeable") {
        chol_nres <- own_normalized(m, d, unname(cpar), pc, fit$sigma, cs_cholesky = TRUE)
        verification[[length(verification) + 1L]] <<- list(model = key,
            check = "corCompSymm: Cholesky whitening would differ from nlme's by (absolute, max)",
            max_discrepancy = abs_diff(chol_nres, nres), tolerance = NULL)
    }

    ## --- unconstrained parameters ---
    if (!is.null(cSt)) {
        note_check(key, "corStruct unconstrained transform",
                   abs_diff(corr_to_unc(m$corr, unname(cpar), maxlen),
                            unname(coef(cSt))), 1e-8)
    }
    if (!is.null(vSt)) {
        note_check(key, "varStruct unconstrained transform",
                   abs_diff(var_to_unc(m$var, unname(vpar)), unname(coef(vSt))), 1e-12)
    }

    ## --- apVar and intervals ---
    aV <- fit$apVar
    iv <- intervals(fit)
    acc <- NULL; acc_iv <- NULL; apvar_err <- NULL
    if (is.null(aV)) {
        ## No variance/correlation parameters: nlme uses the chi-square
        ## interval for sigma with N - REML*p degrees of freedom.
        own_sig <- c(fit$sigma * sqrt(Nr) / sqrt(qchisq(0.975, Nr)), fit$sigma,
                     fit$sigma * sqrt(Nr) / sqrt(qchisq(0.025, Nr)))
        note_check(key, "intervals sigma (chi-square, no apVar), relative",
                   rel_diff(own_sig, unname(iv$sigma)), 1e-12)
    } else {
        own_ap <- own_apvar(m, d, unname(cpar), vpar, fit$sigma, reml, maxlen)
        note_check(key, "apVar 'Pars' vs own unconstrained (natural) estimates",
                   abs_diff(own_ap$pars, unname(attr(aV, "Pars"))), 1e-8)
        note_check(key, "apVar (own fdHess of own loglik) vs fit$apVar, relative to max |entry|",
                   norm_diff(own_ap$apvar, unname(aV)), tol_apvar)
        acc <- own_ap
        acc$apvar <- solve(-rich_hessian(own_ap$f, own_ap$pars))
        acc_check <- solve(-rich_hessian(own_ap$f, own_ap$pars, h = 1e-3))
        note_check(key, "accurate apVar: step h vs h/2, relative to max |entry|",
                   norm_diff(acc$apvar, acc_check), 1e-6)
        apvar_err <- norm_diff(unname(aV), acc$apvar)
        note_check(key, "nlme apVar vs accurate apVar, relative to max |entry|",
                   apvar_err, tol_apvar)
        width <- function(tab) pmax(tab[, 3] - tab[, 1], 1e-300)
        cmp_iv <- function(what, own, ref, tol) {
            ref <- unname(as.matrix(ref)); if (ncol(ref) != 3) ref <- matrix(ref, ncol = 3)
            note_check(key, what, max(abs(own - ref) / width(ref)), tol)
        }
        ## (a) the back-transformation, applied to nlme's own apVar: exact.
        nl <- own_intervals(m, list(pars = unname(attr(aV, "Pars")), apvar = unname(aV),
                                    nc = own_ap$nc, nv = own_ap$nv), maxlen)
        if (!is.null(cSt)) cmp_iv("intervals corStruct from fit$apVar (recipe, exact), rel. to width",
                                  nl$corr, iv$corStruct, tol_int_exact)
        if (!is.null(vSt)) cmp_iv("intervals varStruct from fit$apVar (recipe, exact), rel. to width",
                                  nl$var, iv$varStruct, tol_int_exact)
        cmp_iv("intervals sigma from fit$apVar (recipe, exact), rel. to width",
               nl$sigma, iv$sigma, tol_int_exact)
        ## (b) the whole recipe re-implemented (own fdHess): finite-difference noise.
        own_iv <- own_intervals(m, own_ap, maxlen)
        if (!is.null(cSt)) cmp_iv("intervals corStruct (own fdHess), rel. to width",
                                  own_iv$corr, iv$corStruct, tol_int)
        if (!is.null(vSt)) cmp_iv("intervals varStruct (own fdHess), rel. to width",
                                  own_iv$var, iv$varStruct, tol_int)
        cmp_iv("intervals sigma (own fdHess), rel. to width", own_iv$sigma, iv$sigma, tol_int)
        acc_iv <- own_intervals(m, acc, maxlen)
    }

    ## --- log-likelihood at fixed parameter values ---
    fixed_recs <- lapply(m$fixed, function(f) {
        ffit <- eval(gls_call(m, f$corr, f$var), globalenv())
        fll <- as.numeric(logLik(ffit))
        fpc <- gls_pieces(m, d, f$corr, f$var)
        note_check(key, "loglik at fixed parameters: nlme (fixed structures) vs own, relative",
                   rel_diff(own_loglik(fpc, reml), fll), tol_ll)
        note_check(key, "sigma at fixed parameters, relative",
                   rel_diff(sqrt(fpc$RSS / Nr), ffit$sigma), tol_par)
        cp <- f$corr
        if (!is.null(cp)) names(cp) <- names(cpar)
        vp <- f$var
        if (!is.null(vp) && is.null(names(vp))) names(vp) <- names(vpar)
        list(corr_params = if (is.null(cp)) NULL else named_list(cp),
             corr_unconstrained = if (is.null(cp)) NULL else
                 I(corr_to_unc(m$corr, f$corr, maxlen)),
             var_params = if (is.null(vp)) NULL else named_list(vp),
             var_unconstrained = if (is.null(f$var)) NULL else
                 I(unname(var_to_unc(m$var, f$var))),
             loglik = fll, sigma = ffit$sigma,
             coefficients = I(unname(coef(ffit))))
    })

    fe <- coef(fit)
    V <- unname(vcov(fit))
    corr_rec <- NULL
    if (!is.null(m$corr)) {
        corr_rec <- list(type = m$corr$type, nlme = corr_nlme_text(m$corr),
                         group = m$corr$group, time = m$corr$time,
                         params = named_list(cpar),
                         unconstrained = I(unname(coef(cSt))),
                         max_group_size = as.integer(maxlen))
        corr_rec["time"] <- list(m$corr$time)
    }
    var_rec <- NULL
    if (!is.null(m$var)) {
        var_rec <- list(type = m$var$type, nlme = var_nlme_text(m$var),
                        stratum = m$var$stratum,
                        reference_level = if (m$var$type == "ident")
                            var_reference(m$var, d) else NULL,
                        covariate = m$var$covariate,
                        covariate_rule = m$var$covariate_rule,
                        params = named_list(vpar),
                        unconstrained = I(unname(coef(vSt))))
        for (k in c("stratum", "reference_level", "covariate", "covariate_rule"))
            if (is.null(var_rec[[k]])) var_rec[k] <- list(NULL)
    }
    rec <- list(
        dataset = m$dataset,
        subset = m$subset,
        formula = m$formula,
        method = m$method,
        groups = if (is.null(m$corr)) NULL else m$corr$group,
        time = if (is.null(m$corr)) NULL else m$corr$time,
        correlation = corr_rec,
        variance = var_rec,
        coefficients = named_list(fe),
        se = I(unname(sqrt(diag(V)))),
        vcov = V,
        sigma = fit$sigma,
        loglik = as.numeric(ll),
        loglik_df = as.integer(df),
        aic = AIC(fit),
        bic = BIC(fit),
        nobs = as.integer(fit$dims$N),
        nobs_bic = as.integer(Nr),
        apvar = if (is.null(aV)) NULL else
            list(names = I(colnames(aV)),
                 pars = I(unname(attr(aV, "Pars"))),
                 natural = isTRUE(attr(aV, "natural")),
                 matrix = unname(aV),
                 matrix_accurate = acc$apvar,
                 nlme_error = apvar_err),
        intervals = list(
            level = 0.95,
            coef = interval_rows(iv$coef),
            corr = if (is.null(cSt)) NULL else interval_rows(iv$corStruct),
            var = if (is.null(vSt)) NULL else interval_rows(iv$varStruct),
            sigma = list(lower = unname(iv$sigma[1]), est = unname(iv$sigma[2]),
                         upper = unname(iv$sigma[3]))),
        intervals_accurate = if (is.null(acc_iv)) NULL else list(
            level = 0.95,
            corr = if (is.null(acc_iv$corr)) NULL else
                list(lower = I(acc_iv$corr[, 1]), est = I(acc_iv$corr[, 2]),
                     upper = I(acc_iv$corr[, 3])),
            var = if (is.null(acc_iv$var)) NULL else
                list(lower = I(acc_iv$var[, 1]), est = I(acc_iv$var[, 2]),
                     upper = I(acc_iv$var[, 3])),
            sigma = list(lower = acc_iv$sigma[1], est = acc_iv$sigma[2],
                         upper = acc_iv$sigma[3])),
        fitted_head = I(unname(head(fitted(fit), 10))),
        resid_head = I(unname(head(residuals(fit), 10))),
        pearson_resid_head = I(head(pres, 10)),
        normalized_resid_head = I(head(nres, 10)),
        normalized_resid_ss = sum(nres^2),
        fixed_evaluations = fixed_recs,
        num_iter = as.integer(fit$numIter)
    )
    for (k in c("subset", "groups", "time", "correlation", "variance", "apvar",
                "intervals_accurate"))
        if (is.null(rec[[k]])) rec[k] <- list(NULL)
    if (is.null(cSt)) rec$intervals["corr"] <- list(NULL)
    if (is.null(vSt)) rec$intervals["var"] <- list(NULL)
    if (!is.null(acc_iv)) {
        if (is.null(cSt)) rec$intervals_accurate["corr"] <- list(NULL)
        if (is.null(vSt)) rec$intervals_accurate["var"] <- list(NULL)
    }
    rec
}

records <- list()
for (key in names(models)) records[[key]] <- fit_record(key, models[[key]])

## ---------------------------------------------------------------------------
## Likelihood-ratio tests.
## ---------------------------------------------------------------------------
lrt_records <- list()
for (key in names(lrts)) {
    k <- lrts[[key]]
    f1 <- fits[[k[1]]]; f2 <- fits[[k[2]]]
    a <- anova(f1, f2)
    l1 <- logLik(f1); l2 <- logLik(f2)
    L <- 2 * abs(as.numeric(l2) - as.numeric(l1))
    ddf <- attr(l2, "df") - attr(l1, "df")
    p <- pchisq(L, abs(ddf), lower.tail = FALSE)
    note_check(key, "anova L.Ratio = 2|ll2 - ll1|", abs(a$L.Ratio[2] - L), 1e-9)
    note_check(key, "anova p-value = pchisq(L, |df2 - df1|, upper)",
               abs(a$`p-value`[2] - p), 1e-12)
    lrt_records[[key]] <- list(
        models = I(k), method = models[[k[1]]]$method,
        df = I(as.integer(a$df)), aic = I(a$AIC), bic = I(a$BIC),
        loglik = I(a$logLik), l_ratio = a$L.Ratio[2],
        df_diff = as.integer(ddf), p_value = a$`p-value`[2])
}

## ---------------------------------------------------------------------------
## REML convention cross-check with lme4: gls + corCompSymm with rho >= 0 is
## the random-intercept model, and lme4's profiled criterion at theta
## (REMLcrit or deviance) is -2 times the log-likelihood defined here at
## rho = theta^2 / (1 + theta^2).  Neither includes a 0.5*log|X'X| term.
## ---------------------------------------------------------------------------
lme4_records <- list()
local({
    m <- models$orthodont_cs_reml
    for (reml in c(TRUE, FALSE)) {
        dev <- lme4::lmer(distance ~ age * Sex + (1 | Subject), Orthodont,
                          REML = reml, devFunOnly = TRUE)
        for (theta in c(0.5, 1, 2)) {
            rho <- theta^2 / (1 + theta^2)
            own <- own_loglik(gls_pieces(m, Orthodont, rho, NULL), as.integer(reml))
            crit <- dev(theta)
            note_check(sprintf("lme4 (1 | Subject), %s, theta = %g", if (reml) "REML" else "ML", theta),
                       "own loglik vs -lme4 criterion / 2, relative", rel_diff(own, -crit / 2), 1e-10)
            lme4_records[[length(lme4_records) + 1L]] <<- list(
                method = if (reml) "REML" else "ML", theta = theta, rho = rho,
                lme4_criterion = crit, loglik = own)
        }
    }
})

## ---------------------------------------------------------------------------
## Demonstration: normalized residuals on data *not* sorted by group.
## ---------------------------------------------------------------------------
demo <- local({
    ov <- as.data.frame(nlme::Ovary)
    f <- gls(as.formula(ovary_f), ov, correlation = corAR1(form = ~ 1 | Mare))
    phi <- coef(f$modelStruct$corStruct, unconstrained = FALSE)
    e <- residuals(f, type = "pearson")
    correct <- unname(e)
    for (idx in split(seq_len(nrow(ov)), ov$Mare)) {
        n <- length(idx)
        correct[idx] <- forwardsolve(t(chol(phi^abs(outer(1:n, 1:n, "-")))), e[idx])
    }
    list(description = paste("Ovary in nlme's own (unsorted) row order, corAR1(form = ~ 1 | Mare):",
                             "max |residuals(fit, 'normalized') - correctly whitened residuals|"),
         max_abs_difference = max(abs(unname(residuals(f, type = "normalized")) - correct)),
         loglik_same_as_sorted = abs(as.numeric(logLik(f)) - records$ovary_ar1_reml$loglik) < 1e-9)
})

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    nlme_version = as.character(packageDescription("nlme")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "glsControl() defaults (nlminb; apVar with .relStep = .Machine$double.eps^(1/3), minAbsParApVar = 0.05, natural = TRUE)",
    models = records,
    lrt = lrt_records,
    unsorted_normalized_residuals = demo,
    lme4_reml_convention = lme4_records,
    verification = verification
)

writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
