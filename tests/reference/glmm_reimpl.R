## Plain-R re-implementation of the objectives that lme4 1.1-31's glmer()
## optimizes, used by glmm_reference.R to verify GLMM_DEFINITIONS.md.
##
## Nothing here calls lme4's deviance machinery: the pieces of the model
## (X, Z, the pattern of Lambda, y, prior weights, binomial n, offset,
## family) are taken from a fitted model, and everything else is computed
## from scratch.  Unlike lme4, the penalized IRLS iterations are run to full
## convergence, and the Cholesky factor is computed at the converged mode.
##
##   glmm_pieces(fit)                      model pieces
##   pirls_u(P, theta, beta)               conditional mode u at (theta, beta)
##   laplace_objective(P, theta, beta)     nAGQ = 1 objective (-2 log-lik)
##   agq_objective(P, theta, beta, nAGQ)   nAGQ > 1 objective (lme4's scale)
##   pirls_joint(P, theta)                 nAGQ = 0 (stage-1) objective
##   ghrule_golub_welsch(k)                Gauss-Hermite rule, independently

suppressPackageStartupMessages(library(Matrix))

glmm_pieces <- function(fit) {
    list(X = as.matrix(lme4::getME(fit, "X")),
         Z = as(lme4::getME(fit, "Z"), "CsparseMatrix"),
         Lambdat = lme4::getME(fit, "Lambdat"),
         Lind = lme4::getME(fit, "Lind"),
         lower = lme4::getME(fit, "lower"),
         y = fit@resp$y, wt = fit@resp$weights, n = fit@resp$n,
         offset = fit@resp$offset, fam = stats::family(fit),
         fac = fit@flist[[1]])
}

## Lambda (not its transpose) for a theta vector.
lambda_of <- function(P, theta) {
    Lt <- P$Lambdat
    Lt@x <- as.double(theta[P$Lind])
    t(Lt)
}

## Conditional log-density of y given the linear predictor, times -2: the
## family's aic() term (the saturated log-likelihood is *not* subtracted).
minus2_cond_loglik <- function(P, mu) {
    P$fam$aic(P$y, P$n, mu, P$wt, sum(P$fam$dev.resids(P$y, mu, P$wt)))
}

## Working weights W = prior weight * mu_eta(eta)^2 / V(mu).
working_weights <- function(P, eta) {
    mu <- P$fam$linkinv(eta)
    P$wt * P$fam$mu.eta(eta)^2 / P$fam$variance(mu)
}

## Penalized IRLS for u at fixed (theta, beta): minimizes
##   sum(dev.resids(y, mu(eta), wt)) + ||u||^2,
##   eta = offset + X beta + Z Lambda u,
## by Fisher scoring (Newton for the canonical links used here) with step
## halving, until the largest step is below tol.  Returns the mode and the
## quantities at the mode.  The iterations start at u = 0, or at
## P$u_start when that is set (a warm start; the mode is the same).
pirls_u <- function(P, theta, beta, tol = 1e-11, maxit = 200L) {
    ZL <- P$Z %*% lambda_of(P, theta)
    q <- ncol(ZL)
    fam <- P$fam
    base <- P$offset + drop(P$X %*% beta)
    pdev <- function(u) {
        mu <- fam$linkinv(base + drop(ZL %*% u))
        sum(fam$dev.resids(P$y, mu, P$wt)) + sum(u^2)
    }
    u <- if (!is.null(P$u_start) && length(P$u_start) == q) P$u_start else numeric(q)
    old <- pdev(u)
    converged <- FALSE
    for (it in seq_len(maxit)) {
        eta <- base + drop(ZL %*% u)
        mu <- fam$linkinv(eta)
        me <- fam$mu.eta(eta)
        v <- fam$variance(mu)
        W <- P$wt * me^2 / v
        score <- drop(as.matrix(crossprod(ZL, P$wt * (P$y - mu) * me / v))) - u
        H <- as.matrix(crossprod(ZL * sqrt(W))) + diag(q)
        step <- drop(solve(H, score))
        if (max(abs(step)) < tol) {      # judged on the full Newton step
            u <- u + step
            converged <- TRUE
            break
        }
        ## step halving only when the penalized deviance really increases
        s <- 1
        new <- pdev(u + step)
        while (new > old + 1e-12 * abs(old) && s > 1e-8) {
            s <- s / 2
            new <- pdev(u + s * step)
        }
        u <- u + s * step
        old <- new
    }
    if (!converged) stop("pirls_u did not converge")
    eta <- base + drop(ZL %*% u)
    mu <- fam$linkinv(eta)
    W <- working_weights(P, eta)
    H <- as.matrix(crossprod(ZL * sqrt(W))) + diag(q)
    R <- chol(H)                       # H = R'R, R upper triangular
    list(u = u, eta = eta, mu = mu, W = W, R = R, ZL = ZL,
         ldL2 = 2 * sum(log(diag(R))),
         devres = fam$dev.resids(P$y, mu, P$wt), iterations = it)
}

## The Laplace objective, lme4's nAGQ = 1 "deviance" (-2 * logLik):
##   ldL2 + ||u||^2 + aic(y, n, mu, wt)  at the conditional mode.
laplace_objective <- function(P, theta, beta, details = FALSE) {
    s <- pirls_u(P, theta, beta)
    aic <- minus2_cond_loglik(P, s$mu)
    val <- s$ldL2 + sum(s$u^2) + aic
    if (!details) return(structure(val, u = s$u))
    Lam <- lambda_of(P, theta)
    Hinv <- chol2inv(s$R)
    ## Conditional variance of b = Lambda u: diag(Lambda H^-1 Lambda').
    cv <- rowSums(as.matrix(Lam %*% Hinv) * as.matrix(Lam))
    ## Fixed-effects covariance with theta and W held fixed (lme4's unsc()):
    ## the beta block of the inverse of the joint penalized Hessian.
    sw <- sqrt(s$W)
    ZtWX <- as.matrix(crossprod(s$ZL * sw, P$X * sw))
    XtWX <- crossprod(P$X * sw)
    unsc <- solve(XtWX - crossprod(ZtWX, Hinv %*% ZtWX))
    list(objective = val, ldL2 = s$ldL2, ussq = sum(s$u^2), aic = aic,
         drsum = sum(s$devres), u = s$u, b = drop(as.matrix(Lam %*% s$u)),
         condvar_b = cv, mu = s$mu, eta = s$eta, W = s$W, unsc = unsc,
         iterations = s$iterations)
}

## lme4's nAGQ > 1 objective for one scalar random-effects term:
##   sum_j [ devc_j(u_j) + log(L_jj^2)
##           - 2 log sum_k w_k exp(-(devc_j(u_j + z_k s_j) - devc_j(u_j))/2 + z_k^2/2) ]
## with devc_j(u) = u^2 + sum_{i in j} devres_i(u), s_j = 1 / L_jj, (z, w)
## lme4's GHrule(nAGQ).  This is relative to the saturated model: add
## aic - sum(devres) (a constant) to get -2 * log-likelihood.
agq_objective <- function(P, theta, beta, nAGQ, rule = lme4::GHrule(nAGQ)) {
    s <- pirls_u(P, theta, beta)
    fac <- as.integer(P$fac)
    q <- length(s$u)
    stopifnot(ncol(s$ZL) == nlevels(P$fac))
    sdev <- 1 / diag(s$R)              # L is diagonal for one scalar term
    devc <- function(u) {
        eta <- s$eta + drop(s$ZL %*% (u - s$u))
        mu <- P$fam$linkinv(eta)
        u^2 + as.vector(rowsum(P$fam$dev.resids(P$y, mu, P$wt), fac,
                               reorder = TRUE))
    }
    devc0 <- devc(s$u)
    acc <- numeric(q)
    for (k in seq_len(nrow(rule))) {
        z <- rule[k, "z"]
        acc <- acc + rule[k, "w"] *
            exp(-0.5 * (devc(s$u + z * sdev) - devc0) + 0.5 * z^2)
    }
    val <- sum(devc0) + s$ldL2 - 2 * sum(log(acc))
    structure(c(objective = val,
                saturated_constant = minus2_cond_loglik(P, s$mu) - sum(s$devres)),
              u = s$u)
}

## Stage-1 (nAGQ = 0) objective at theta: PIRLS jointly over (u, beta),
## then ldL2 + ||u||^2 + aic, with L the u-block factor only.
pirls_joint <- function(P, theta, beta_start, tol = 1e-11, maxit = 200L) {
    ZL <- P$Z %*% lambda_of(P, theta)
    q <- ncol(ZL); p <- ncol(P$X)
    fam <- P$fam
    A <- cbind(as.matrix(ZL), P$X)
    pdev <- function(par) {
        mu <- fam$linkinv(P$offset + drop(A %*% par))
        sum(fam$dev.resids(P$y, mu, P$wt)) + sum(par[seq_len(q)]^2)
    }
    par <- c(numeric(q), beta_start)
    old <- pdev(par)
    pen <- c(rep(1, q), rep(0, p))
    for (it in seq_len(maxit)) {
        eta <- P$offset + drop(A %*% par)
        mu <- fam$linkinv(eta); me <- fam$mu.eta(eta); v <- fam$variance(mu)
        W <- P$wt * me^2 / v
        score <- drop(crossprod(A, P$wt * (P$y - mu) * me / v)) - pen * par
        H <- crossprod(A * sqrt(W)) + diag(pen)
        step <- drop(solve(H, score))
        if (max(abs(step)) < tol) { par <- par + step; break }
        s <- 1
        new <- pdev(par + step)
        while (new > old + 1e-12 * abs(old) && s > 1e-8) { s <- s / 2; new <- pdev(par + s * step) }
        par <- par + s * step
        old <- new
    }
    u <- par[seq_len(q)]
    eta <- P$offset + drop(A %*% par)
    mu <- fam$linkinv(eta)
    W <- working_weights(P, eta)
    R <- chol(as.matrix(crossprod(ZL * sqrt(W))) + diag(q))
    c(objective = 2 * sum(log(diag(R))) + sum(u^2) + minus2_cond_loglik(P, mu),
      beta = par[-seq_len(q)])
}

## Gauss-Hermite rule for the standard normal density by Golub-Welsch:
## nodes are the eigenvalues of the Jacobi matrix of the probabilists'
## Hermite polynomials (off-diagonal sqrt(1..k-1)), weights the squared
## first components of the eigenvectors (they sum to 1).
ghrule_golub_welsch <- function(k) {
    if (k == 1) return(cbind(z = 0, w = 1))
    J <- matrix(0, k, k)
    off <- sqrt(seq_len(k - 1))
    J[cbind(1:(k - 1), 2:k)] <- off
    J[cbind(2:k, 1:(k - 1))] <- off
    e <- eigen(J, symmetric = TRUE)
    o <- order(e$values)
    cbind(z = e$values[o], w = e$vectors[1, o]^2)
}

## Emulation of lme4 1.1-31's C++ PIRLS (pwrssUpdate with uOnly = TRUE)
## followed by glmResp::Laplace, to show exactly why lme4's value differs
## from laplace_objective(): the iterations start from the linear predictor
## lp0 stored in the deviance function's environment, stop as soon as the
## penalized deviance changes by less than tol (relative), and the factor L
## is the one computed from the weights at the start of the last iteration.
lme4_laplace_emulation <- function(P, theta, beta, lp0, tol = 1e-7) {
    ZL <- P$Z %*% lambda_of(P, theta)
    q <- ncol(ZL)
    fam <- P$fam
    off <- P$offset + drop(P$X %*% beta)
    eta <- P$offset + lp0
    mu <- fam$linkinv(eta)
    old <- .Machine$double.xmax
    for (i in 1:100) {
        me <- fam$mu.eta(eta)
        sw <- me * sqrt(P$wt / fam$variance(mu))
        R <- chol(as.matrix(crossprod(ZL * sw)) + diag(q))
        wrk <- (eta - off) + (P$y - mu) / me        # working response
        rhs <- drop(as.matrix(crossprod(ZL * sw, sw * wrk)))
        u <- backsolve(R, forwardsolve(t(R), rhs))
        eta <- off + drop(ZL %*% u)
        mu <- fam$linkinv(eta)
        pdev <- sum(fam$dev.resids(P$y, mu, P$wt)) + sum(u^2)
        if (abs((old - pdev) / pdev) < tol) break
        if (pdev > old) stop("emulation: step halving would be needed")
        old <- pdev
    }
    2 * sum(log(diag(R))) + sum(u^2) + minus2_cond_loglik(P, mu)
}

## The objective of the re-implementation for a parameter vector c(theta, beta).
exact_objective_fun <- function(P, ntheta, nagq) {
    force(P); force(ntheta); force(nagq)
    ## Warm start: PIRLS begins at the previous call's mode.  The mode is
    ## unique and iterated to convergence, so this only saves time.
    last_u <- NULL
    function(par) {
        theta <- par[seq_len(ntheta)]
        beta <- par[-seq_len(ntheta)]
        P$u_start <- last_u
        val <- if (nagq <= 1L) laplace_objective(P, theta, beta)
               else agq_objective(P, theta, beta, nagq)[["objective"]]
        last_u <<- attr(val, "u")
        as.numeric(val)
    }
}

## Central-difference gradient with per-coordinate steps h.
fd_gradient <- function(f, x, h) {
    vapply(seq_along(x), function(j) {
        e <- numeric(length(x)); e[j] <- h[j]
        (f(x + e) - f(x - e)) / (2 * h[j])
    }, numeric(1))
}

## Newton iterations on the exactly-evaluated objective, from lme4's
## estimates.  The Hessian is lme4's recipe (deriv12, delta = 1e-4); the
## gradient uses steps of 1e-3 standard errors, so that badly scaled
## coefficients (age^2) are handled.
## refresh_hessian: recompute the Hessian at each accepted step (glmm_links_reference.R does,
## with maxit = 8).
newton_polish <- function(f, x0, maxit = 6L, refresh_hessian = FALSE) {
    H <- lme4:::deriv12(f, x0, delta = 1e-4)$Hessian
    se <- sqrt(abs(diag(solve(H)) * 2))
    h <- pmax(1e-3 * se, 1e-7)
    x <- x0
    fx <- f(x)
    for (it in seq_len(maxit)) {
        g <- fd_gradient(f, x, h)
        step <- -drop(solve(H, g))
        xn <- x + step
        fn <- f(xn)
        if (fn > fx + 1e-9 * abs(fx)) break
        x <- xn
        fx <- fn
        if (max(abs(step) / se) < 1e-8) break
        if (refresh_hessian) H <- lme4:::deriv12(f, x, delta = 1e-4, fx = fx)$Hessian
    }
    list(par = x, objective = fx, iterations = it,
         scaled_gradient = fd_gradient(f, x, h) * se, se = se)
}

vcov_from_hessian <- function(H, ntheta) {
    Hi <- solve(H)
    i <- -seq_len(ntheta)
    V <- Hi[i, i]
    V + t(V)       # = 2 * (H^-1)_{beta,beta}, symmetrised, as lme4 does
}
