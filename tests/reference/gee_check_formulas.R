## Closed-form checks of geepack's GEE estimators (see GEE_ESTIMATORS.md).
##
## Run from the repository root:
##     Rscript tests/reference/gee_check_formulas.R
## Each line prints the largest relative difference between what geeglm
## reports and the formula recomputed here from the fitted values.  All of
## them must be below 1e-10; the script stops otherwise.  (The complete
## algorithm, iteration by iteration, is checked by gee_reference.R against
## geepack_reimpl.R.)

suppressPackageStartupMessages({
    library(geepack)
    library(MASS)
})
source(file.path("tests", "reference", "geepack_reimpl.R"))
data(ohio, dietox, respiratory, package = "geepack")
epil <- MASS::epil
respiratory$subject <- 100L * respiratory$center + respiratory$id

rel <- function(a, b) {
    a <- as.matrix(a); b <- as.matrix(b)
    s <- if (nrow(b) == ncol(b) && nrow(b) > 1) sqrt(abs(outer(diag(b), diag(b)))) else abs(b)
    max(abs(unname(a) - unname(b)) / s)
}
report <- function(what, value, limit = 1e-10) {
    cat(sprintf("%-62s %.2e\n", what, value))
    if (!(value < limit)) stop("check failed: ", what)
}

## Per-cluster quantities from a geeglm fit, using its fitted values.
pieces <- function(g, waves = NULL) {
    a <- g$geese
    fam <- family(g)
    eta <- as.vector(g$linear.predictors)      # includes the offset
    mu <- fam$linkinv(eta)
    V <- fam$variance(mu)
    w <- a$weights
    r <- (g$y - mu) / sqrt(V)                  # Pearson residual, no weights
    D <- (fam$mu.eta(eta) / sqrt(V)) * model.matrix(g)
    cl <- rep(seq_along(a$clusz), a$clusz)
    if (is.null(waves)) waves <- unlist(lapply(a$clusz, seq_len))
    list(a = a, r = r, w = w, D = D, cl = cl, waves = as.integer(waves),
         idx = split(seq_along(cl), cl))
}
pairs_of <- function(s) if (s < 2) matrix(0L, 0, 2) else t(combn(s, 2))
## all within-cluster pairs j < k: products of e = r / sqrt(phi), weights
## w_j w_k, wave codes
pair_table <- function(P, phi) {
    e <- P$r / sqrt(phi)
    do.call(rbind, lapply(P$idx, function(ii) {
        pr <- pairs_of(length(ii))
        if (!nrow(pr)) return(NULL)
        j <- ii[pr[, 1]]; k <- ii[pr[, 2]]
        data.frame(z = e[j] * e[k], ww = P$w[j] * P$w[k],
                   tj = P$waves[j], tk = P$waves[k])
    }))
}
## Working correlation matrix of a cluster, given the wave codes.
corr_matrix <- function(corstr, alpha, t, alpha_names = NULL) {
    s <- length(t)
    R <- diag(s)
    if (s == 1) return(R)
    for (j in 1:(s - 1)) for (k in (j + 1):s) {
        R[j, k] <- R[k, j] <- switch(corstr,
            independence = 0,
            exchangeable = alpha,
            ar1 = alpha^abs(t[k] - t[j]),
            unstructured = alpha[[paste0("alpha.", t[j], ":", t[k])]])
    }
    R
}
sandwich <- function(P, corstr) {
    a <- P$a
    phi <- a$gamma
    p <- ncol(P$D)
    A <- matrix(0, p, p); B <- matrix(0, p, p)
    for (ii in P$idx) {
        R <- corr_matrix(corstr, a$alpha, P$waves[ii])
        rw <- sqrt(P$w[ii])
        Dt <- rw * P$D[ii, , drop = FALSE]
        Vi <- phi * R
        A <- A + crossprod(Dt, solve(Vi, Dt))
        U <- crossprod(Dt, solve(Vi, rw * P$r[ii]))
        B <- B + tcrossprod(U)
    }
    list(naive = solve(A), robust = solve(A) %*% B %*% solve(A))
}

cat("== scale phi = sum(w r^2) / sum(w), r = (y - mu) / sqrt(V(mu)) ==\n")
g <- geeglm(resp ~ age + smoke, id = id, data = ohio, family = binomial, corstr = "exchangeable")
P <- pieces(g)
report("ohio exchangeable: phi", rel(sum(P$w * P$r^2) / sum(P$w), P$a$gamma))
gw <- geeglm(y ~ lbase + trt + lage + V4, id = subject, data = epil, family = poisson,
             corstr = "exchangeable", weights = 1 + (subject %% 3))
Pw <- pieces(gw)
report("epil, weights 1 + subject %% 3: phi = sum(w r^2)/sum(w)",
       rel(sum(Pw$w * Pw$r^2) / sum(Pw$w), Pw$a$gamma))
cat(sprintf("   (for comparison: sum(w r^2)/(N - p) = %.6f, sum(r^2)/N = %.6f, geepack %.6f)\n",
            sum(Pw$w * Pw$r^2) / (length(Pw$r) - ncol(Pw$D)), mean(Pw$r^2), Pw$a$gamma))

cat("== exchangeable alpha = sum_i sum_{j<k} w_j w_k e_j e_k / sum_i sum_{j<k} w_j w_k ==\n")
pt <- pair_table(P, P$a$gamma)
report("ohio exchangeable: alpha", rel(sum(pt$ww * pt$z) / sum(pt$ww), P$a$alpha))
ptw <- pair_table(Pw, Pw$a$gamma)
report("epil weighted exchangeable: alpha", rel(sum(ptw$ww * ptw$z) / sum(ptw$ww), Pw$a$alpha))

cat("== unstructured alpha_(a,b) = weighted mean of e_j e_k over pairs with waves (a, b) ==\n")
gu <- geeglm(outcome ~ treat + sex + age + baseline, id = subject, data = respiratory,
             family = binomial, corstr = "unstructured", waves = visit)
Pu <- pieces(gu, waves = as.integer(factor(respiratory$visit)))
ptu <- pair_table(Pu, Pu$a$gamma)
au <- with(ptu, tapply(ww * z, paste0("alpha.", tj, ":", tk), sum) /
                tapply(ww, paste0("alpha.", tj, ":", tk), sum))
report("respiratory unstructured: alpha", rel(au[names(Pu$a$alpha)], Pu$a$alpha))

cat("== ar1: alpha solves sum w_j w_k d a^(d-1) (e_j e_k - a^d) = 0 over ALL pairs, d = |wave lag| ==\n")
## At the default tolerance alpha is one Gauss-Newton step short of this
## root, so the check uses a tightly converged fit.
tight <- geese.control(epsilon = 1e-12, maxit = 200)
ga <- geeglm(resp ~ age + smoke, id = id, data = ohio, family = binomial, corstr = "ar1",
             waves = age, control = tight)
Pa <- pieces(ga, waves = as.integer(factor(ohio$age)))
pta <- pair_table(Pa, Pa$a$gamma)
pta$d <- abs(pta$tk - pta$tj)
ee <- function(a) with(pta, sum(ww * ifelse(d == 1, 1, d * a^(d - 1)) * (z - a^d)))
root <- uniroot(ee, c(0.01, 0.99), tol = 1e-15)$root
report("ohio ar1 (tight fit): root of the estimating equation", rel(root, Pa$a$alpha), 1e-9)
lag1 <- with(pta[pta$d == 1, ], sum(z) / length(z))
cat(sprintf("   (lag-1 moment estimator would give %.6f; geepack %.6f)\n", lag1, Pa$a$alpha))
## gaps: waves are factor codes; a whole missing level closes the gap
r3 <- respiratory[respiratory$visit != 2, ]
g3 <- geeglm(outcome ~ treat + sex + age + baseline, id = subject, data = r3, family = binomial,
             corstr = "ar1", waves = visit, control = tight)
fit_codes <- gp_fit(model.matrix(g3), g3$y, g3$id, family = binomial(), corstr = "ar1",
                    waves = as.integer(factor(r3$visit)), eps = 1e-12, maxit = 200,
                    start = coef(glm(outcome ~ treat + sex + age + baseline, binomial, r3)))
fit_raw <- gp_fit(model.matrix(g3), g3$y, g3$id, family = binomial(), corstr = "ar1",
                  waves = r3$visit, eps = 1e-12, maxit = 200,
                  start = coef(glm(outcome ~ treat + sex + age + baseline, binomial, r3)))
report("visits 1,3,4 only: alpha with lags from factor codes 1,2,3", rel(fit_codes$alpha, g3$geese$alpha))
cat(sprintf("   (with lags from the raw visits 1,3,4 alpha would be %.6f; geepack %.6f)\n",
            fit_raw$alpha, g3$geese$alpha))

cat("== robust (san.se) and naive variance ==\n")
for (case in list(list(g, P, "exchangeable", "ohio exchangeable"),
                  list(gw, Pw, "exchangeable", "epil weighted exchangeable"),
                  list(gu, Pu, "unstructured", "respiratory unstructured"),
                  list(ga, Pa, "ar1", "ohio ar1"))) {
    s <- sandwich(case[[2]], case[[3]])
    report(paste(case[[4]], ": vbeta = A^-1 B A^-1"), rel(s$robust, case[[2]]$a$vbeta))
    report(paste(case[[4]], ": vbeta.naiv = A^-1 (includes phi)"), rel(s$naive, case[[2]]$a$vbeta.naiv))
}

cat("== jackknife variances, f = (K - p - q - 1) / K ==\n")
ge <- geeglm(y ~ lbase + trt + lage + V4, id = subject, data = epil, family = poisson,
             corstr = "exchangeable", std.err = "jack")
gj <- geeglm(y ~ lbase + trt + lage + V4, id = subject, data = epil, family = poisson,
             corstr = "exchangeable", std.err = "j1s")
Pe <- pieces(ge)
K <- length(Pe$idx); p <- ncol(Pe$D); q <- length(Pe$a$alpha)
f <- (K - p - q - 1) / K
## H_i = D~' R^-1 D~ and G_i = D~' R^-1 r~ (D~, r~ scaled by sqrt(w); no phi)
HG <- lapply(Pe$idx, function(ii) {
    R <- corr_matrix("exchangeable", Pe$a$alpha, Pe$waves[ii])
    rw <- sqrt(Pe$w[ii]); Dt <- rw * Pe$D[ii, , drop = FALSE]
    list(H = crossprod(Dt, solve(R, Dt)), G = crossprod(Dt, solve(R, rw * Pe$r[ii])))
})
H <- Reduce(`+`, lapply(HG, `[[`, "H")); G <- Reduce(`+`, lapply(HG, `[[`, "G"))
ajs <- f * Reduce(`+`, lapply(HG, function(x) tcrossprod(solve(H - x$H, x$G))))
j1s <- f * Reduce(`+`, lapply(HG, function(x) tcrossprod(solve(H - x$H, G - x$G))))
report("epil exchangeable: jack = f sum_i ((H - H_i)^-1 G_i)^2", rel(ajs, ge$geese$vbeta.ajs))
report("epil exchangeable: j1s  = f sum_i ((H - H_i)^-1 (G - G_i))^2", rel(j1s, gj$geese$vbeta.j1s))
cat(sprintf("   (|G| at the reported beta, default tolerance: %.2e; it is why jack != j1s)\n",
            max(abs(G))))

cat("== QIC ==\n")
qic <- QIC(g)
gi <- geeglm(resp ~ age + smoke, id = id, data = ohio, family = binomial, corstr = "independence")
mu <- fitted(g); y <- g$y
quasi <- sum(y * log(mu / (1 - mu)) + log(1 - mu))
cic <- sum(diag(MASS::ginv(gi$geese$vbeta.naiv, tol = .Machine$double.eps) %*% g$geese$vbeta))
report("ohio exchangeable: quasi-likelihood", rel(quasi, qic[["Quasi Lik"]]))
report("ohio exchangeable: CIC = tr(ginv(naive_indep) V_robust)", rel(cic, qic[["CIC"]]))
report("ohio exchangeable: QIC = -2 (quasi - CIC)", rel(-2 * (quasi - cic), qic[["QIC"]]))
cat("all checks passed\n")
