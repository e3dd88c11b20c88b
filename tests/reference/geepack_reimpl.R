## A plain-R re-implementation of geepack 1.3.9's GEE fitter (geese.fit ->
## C++ gee_rap: gee_est, gee_var, jack_ajs, gee_jack), written to pin down
## exactly what geepack computes.  gee_reference.R fits every fixture with
## both geepack::geeglm and gp_fit() below and stops unless they agree to
## 1e-10 relative, which is the empirical proof of the formulas in
## GEE_ESTIMATORS.md.  It covers what geeglm() can reach: an identity scale
## link with an intercept-only scale model, an identity correlation link,
## link.same = TRUE, and the families gaussian, binomial, poisson and Gamma.
## It takes any stats::family object's linkinv, mu.eta and variance, so
## gee_links_reference.R also uses it (verified against geepack on the links
## geepack has) for what geepack cannot fit: poisson("sqrt") and
## inverse.gaussian (dV/dmu = 3 mu^2 below).
##
## Arguments
##   X, y       model matrix and response (for binomial: proportions).
##   id         cluster labels; clusters are *runs* of equal consecutive
##              values, exactly as geese.fit does
##              (diff(as.numeric(id)) != 0).
##   w          prior weights (for cbind() binomial responses: the trials).
##   offset     linear-predictor offset.
##   waves      integer wave codes.  geeglm() turns its 'waves' into a
##              factor first, so these are the factor codes
##              as.integer(factor(waves)), not the raw values.  NULL gives
##              1..n_i within each cluster.
##   family     a stats::family object.
##   corstr     "independence", "exchangeable", "ar1", "unstructured",
##              "userdefined" or "fixed".
##   zcor       the correlation design matrix for "unstructured" (default
##              genZcor), "userdefined" and "fixed" (one column holding the
##              fixed correlations, as fixed2Zcor() builds it).
##   scale.fix  as in geeglm (see the note on phi0 below).
##   eps, maxit geese.control()'s epsilon (1e-4) and maxit (25).
##   start      starting beta: geeglm passes coef(glm(...)) with the same
##              formula, family, weights and offset.
##   jack       any of "jack", "j1s", "fij".
##
## Returns a list with beta, alpha, phi, phi0, iter, converged, vbeta
## (robust), vbeta.naiv, valpha, vgamma and vbeta.ajs / vbeta.j1s /
## vbeta.fij on request.
gp_fit <- function(X, y, id, w = NULL, offset = NULL, waves = NULL, family,
                   corstr = "independence", zcor = NULL, scale.fix = FALSE,
                   eps = 1e-4, maxit = 25, start, jack = character(0)) {
    N <- length(y)
    if (is.null(w)) w <- rep(1, N)
    if (is.null(offset)) offset <- rep(0, N)
    clusnew <- c(which(diff(as.numeric(id)) != 0), length(id))
    clusz <- c(clusnew[1], diff(clusnew))
    K <- length(clusz)
    if (is.null(waves)) waves <- unlist(lapply(clusz, seq_len))
    waves <- as.integer(waves)
    idx <- split(seq_len(N), rep(seq_len(K), clusz))
    if (corstr == "unstructured" && is.null(zcor))
        zcor <- geepack::genZcor(clusz, waves, 4L)
    if (!is.null(zcor)) zcor <- as.matrix(zcor)
    ## rows of zcor belonging to each cluster (one row per within-cluster
    ## pair (j, k), j < k, in the order (1,2), (1,3), ..., (2,3), ...)
    zrows <- NULL
    if (corstr %in% c("unstructured", "userdefined", "fixed")) {
        crs <- clusz * (clusz - 1) / 2
        zrows <- split(seq_len(sum(crs)), factor(rep(seq_len(K), crs), levels = seq_len(K)))
    }
    q <- switch(corstr, independence = 0L, exchangeable = 1L, ar1 = 1L, ncol(zcor))
    q_est <- if (corstr == "fixed") 0L else q      # "fixed": alpha stays 1
    p <- ncol(X)
    linkinv <- family$linkinv
    mu.eta <- family$mu.eta
    vfun <- family$variance
    vmu <- switch(family$family,                     # dV/dmu (famstr.cc)
                  gaussian = function(m) 0 * m,
                  binomial = function(m) 1 - 2 * m,
                  poisson = function(m) 1 + 0 * m,
                  Gamma = function(m) 2 * m,
                  inverse.gaussian = function(m) 3 * m^2)  # beyond geepack: gee_links_reference.R
    pairs <- function(s) if (s < 2) matrix(0L, 0, 2) else t(utils::combn(s, 2))

    ## Working correlation R_i and E_i = d rho_i / d alpha (one row per pair).
    corr <- function(i, alpha) {
        ii <- idx[[i]]
        s <- length(ii)
        R <- diag(s)
        if (s == 1 || corstr == "independence") return(list(R = R, E = NULL))
        pr <- pairs(s)
        t <- waves[ii]
        if (corstr == "exchangeable") {
            rho <- rep(alpha, nrow(pr))
            E <- matrix(1, nrow(pr), 1)
        } else if (corstr == "ar1") {
            d <- abs(t[pr[, 2]] - t[pr[, 1]])       # all pairs, wave-code lags
            rho <- alpha^d
            E <- matrix(ifelse(d == 1, 1, d * alpha^(d - 1)), ncol = 1)
        } else {
            ## unstructured / userdefined / fixed: rho = Zcor_i alpha, one
            ## value per pair in cluster order.  geepack then builds the
            ## s x s matrix from these and *re-indexes it by the wave codes*
            ## (famstr.cc cor_unstr: MatRowCol(rho2mat(rho), wave, wave)).
            ## That is the identity when the cluster's waves are 1..s (full
            ## or monotone-dropout clusters); for any other pattern geepack
            ## reads outside the s x s matrix (wrong results or a segfault),
            ## so gp_fit refuses it.
            if (!identical(as.integer(t), seq_len(s)))
                stop("unstructured/userdefined/fixed: cluster ", i,
                     " has waves other than 1..n_i; geepack's result is undefined")
            Z <- zcor[zrows[[i]], , drop = FALSE]
            rho <- drop(Z %*% (if (corstr == "fixed") 1 else alpha))
            E <- Z
        }
        R[pr] <- rho
        R[pr[, 2:1, drop = FALSE]] <- rho
        list(R = R, E = E)
    }
    ## Per-cluster pieces (geesubs.cc gee_prep): Pearson residuals PR (no
    ## weights), D = mu_eta / sqrt(V) * X, V and dV/dmu.
    prep <- function(i, beta) {
        ii <- idx[[i]]
        Xi <- X[ii, , drop = FALSE]
        eta <- drop(Xi %*% beta) + offset[ii]
        mu <- linkinv(eta)
        V <- vfun(mu)
        list(PR = (y[ii] - mu) / sqrt(V), D = (mu.eta(eta) / sqrt(V)) * Xi,
             V = V, Vmu = vmu(mu), w = w[ii])
    }

    ## gee_est: one pass = beta step, then scale, then correlation.
    est <- function(beta, alpha, gamma, skip = integer(0), maxit) {
        use <- setdiff(seq_len(K), skip)
        keep <- unlist(idx[use])
        for (iter in 0:(maxit - 1)) {
            ## beta: Fisher scoring step with R (phi does not enter)
            H <- matrix(0, p, p)
            G <- rep(0, p)
            for (i in use) {
                pp <- prep(i, beta)
                R <- corr(i, alpha)$R
                rw <- sqrt(pp$w)
                D <- rw * pp$D
                PR <- rw * pp$PR
                H <- H + crossprod(D, solve(R, D))
                G <- G + crossprod(D, solve(R, PR))
            }
            step <- drop(solve(H, G))
            beta <- beta + step
            d1 <- max(abs(step))
            ## scale: phi = sum(w r^2) / sum(w) (one Newton step of a linear
            ## equation, so exact), with r from the new beta
            eta <- drop(X %*% beta) + offset
            mu <- linkinv(eta)
            PRall <- (y - mu) / sqrt(vfun(mu))
            d2 <- 0
            if (!scale.fix) {
                gnew <- sum(w[keep] * PRall[keep]^2) / sum(w[keep])
                d2 <- abs(gnew - gamma)
                gamma <- gnew
            }
            ## correlation: one Gauss-Newton step of
            ##   sum_i E_i' diag(w_j w_k) (e_j e_k - rho_jk(alpha)) = 0,
            ## e = r / sqrt(phi), over all pairs j < k of clusters of size > 1
            d3 <- 0
            if (q_est > 0) {
                Ha <- matrix(0, q, q)
                Ga <- rep(0, q)
                for (i in use) {
                    ii <- idx[[i]]
                    s <- length(ii)
                    if (s == 1) next
                    pr <- pairs(s)
                    e <- PRall[ii] / sqrt(gamma)
                    z <- e[pr[, 1]] * e[pr[, 2]]
                    RE <- corr(i, alpha)
                    rho <- RE$R[pr]
                    ww <- w[ii][pr[, 1]] * w[ii][pr[, 2]]
                    Ha <- Ha + crossprod(RE$E, ww * RE$E)
                    Ga <- Ga + crossprod(RE$E, ww * (z - rho))
                }
                da <- drop(solve(Ha, Ga))
                alpha <- alpha + da
                d3 <- max(abs(da))
            }
            if (max(d1, d2, d3) <= eps) break
        }
        list(beta = beta, alpha = alpha, gamma = gamma, iter = iter + 1L,
             converged = max(d1, d2, d3) <= eps)
    }

    ## Starting values, as geese.fit: alpha = 0 (fixed: 1); the scale from
    ## the start beta WITHOUT the offset, unweighted.  With scale.fix = TRUE
    ## this phi0 is never updated (scale.value is ignored by geese.fit).
    alpha0 <- if (corstr == "fixed") 1 else rep(0, q)
    mu0 <- linkinv(drop(X %*% start))
    phi0 <- mean((y - mu0)^2 / vfun(mu0))
    fit <- est(start, alpha0, phi0, maxit = maxit)
    beta <- fit$beta
    alpha <- fit$alpha
    phi <- fit$gamma

    ## gee_var: sandwich and naive variance at the final estimates.
    A <- matrix(0, p, p)
    L11 <- matrix(0, p, p)
    Ai <- vector("list", K)
    Ui <- vector("list", K)
    ## full Hessian blocks of the joint (beta, gamma, alpha) equations
    lev1 <- !scale.fix
    lev2 <- q_est > 0
    Cb <- 0; Bb <- matrix(0, 1, p)
    Fb <- matrix(0, q, q); Db <- matrix(0, q, p); Eb <- matrix(0, q, 1)
    L12 <- matrix(0, p, 1); L22 <- 0
    L13 <- matrix(0, p, q); L33 <- matrix(0, q, q); L23 <- matrix(0, 1, q)
    ## geepack reuses one Hess/Grad object for all clusters and does not
    ## reset its alpha parts for a cluster of size 1, so such a cluster
    ## repeats the previous cluster's alpha contributions (F, D, E, U3).
    Fi <- matrix(0, q, q); Di <- matrix(0, q, p); Ei <- matrix(0, q, 1); U3 <- rep(0, q)
    for (i in seq_len(K)) {
        pp <- prep(i, beta)
        RE <- corr(i, alpha)
        s <- length(pp$PR)
        rw <- sqrt(pp$w)
        D <- rw * pp$D
        PR <- rw * pp$PR
        V1 <- phi * RE$R
        Ai[[i]] <- crossprod(D, solve(V1, D))
        Ui[[i]] <- drop(crossprod(D, solve(V1, PR)))
        A <- A + Ai[[i]]
        L11 <- L11 + tcrossprod(Ui[[i]])
        U2 <- 0
        if (lev1) {
            f <- -2 * pp$PR / sqrt(pp$V) - pp$PR^2 / pp$V * pp$Vmu
            Cb <- Cb + sum(pp$w / (2 * phi))
            Bb <- Bb - colSums((pp$w / (2 * phi)) * f * pp$D)
            U2 <- sum(pp$w / (2 * phi) * (pp$PR^2 - phi))
        }
        if (lev2 && s > 1) {
            pr <- pairs(s); j <- pr[, 1]; k <- pr[, 2]
            z <- pp$PR[j] * pp$PR[k] / phi
            ww <- pp$w[j] * pp$w[k]
            Fi <- crossprod(RE$E, ww * RE$E)
            ZB <- (-pp$PR[j] * pp$D[j, , drop = FALSE] - pp$PR[k] * pp$D[k, , drop = FALSE] -
                   0.5 * pp$PR[j] * pp$PR[k] *
                   (pp$Vmu[j] / sqrt(pp$V[j]) * pp$D[j, , drop = FALSE] +
                    pp$Vmu[k] / sqrt(pp$V[k]) * pp$D[k, , drop = FALSE])) / phi
            Di <- crossprod(RE$E, -ww * ZB)
            U3 <- drop(crossprod(RE$E, ww * (z - RE$R[pr])))
            if (lev1) Ei <- crossprod(RE$E, ww * z / phi)
        }
        if (lev2) { Fb <- Fb + Fi; Db <- Db + Di; Eb <- Eb + Ei }
        if (lev1) { L12 <- L12 + Ui[[i]] * U2; L22 <- L22 + U2^2 }
        if (lev2) {
            L13 <- L13 + tcrossprod(Ui[[i]], U3)
            L33 <- L33 + tcrossprod(U3)
            if (lev1) L23 <- L23 + U2 * U3
        }
    }
    Ainv <- solve(A)
    out <- list(beta = beta, alpha = alpha, phi = phi, phi0 = phi0,
                iter = fit$iter, converged = fit$converged, clusz = clusz,
                vbeta = Ainv %*% L11 %*% Ainv, vbeta.naiv = Ainv)
    Cinv <- if (lev1) 1 / Cb else 0
    Binv <- if (lev1) -Cinv * Bb %*% Ainv else matrix(0, 1, p)
    if (lev1)
        out$vgamma <- (Binv %*% L11 + Cinv * t(L12)) %*% t(Binv) + (Binv %*% L12 + Cinv * L22) * Cinv
    if (lev2) {
        Finv <- solve(Fb)
        Einv <- -Finv %*% Eb * Cinv
        Dinv <- -Finv %*% (Db %*% Ainv + Eb %*% Binv)
        out$valpha <- (Dinv %*% L11 + Einv %*% t(L12) + Finv %*% t(L13)) %*% t(Dinv) +
            (Dinv %*% L12 + Einv * L22 + Finv %*% t(L23)) %*% t(Einv) +
            (Dinv %*% L13 + Einv %*% L23 + Finv %*% L33) %*% Finv
    }

    ## Jackknife variances; f = (K - p - q - r) / K with q = length(alpha)
    ## and r = 1 (the scale parameter, counted even when scale.fix = TRUE).
    f <- (K - p - q - 1) / K
    if ("jack" %in% jack) {             # approximate jackknife (jack_ajs)
        vb <- matrix(0, p, p)
        for (i in seq_len(K)) vb <- vb + tcrossprod(solve(A - Ai[[i]], Ui[[i]]))
        out$vbeta.ajs <- f * vb
    }
    for (type in intersect(jack, c("j1s", "fij"))) {   # gee_jack
        vb <- matrix(0, p, p)
        for (i in seq_len(K)) {
            fi <- est(beta, alpha, phi, skip = i,
                      maxit = if (type == "j1s") 1L else maxit)
            vb <- vb + tcrossprod(fi$beta - beta)
        }
        out[[paste0("vbeta.", type)]] <- f * vb
    }
    out
}
