## Reference GEE fits for the family/link pairs that gee.json does not cover,
## and for the banded (m-dependent) working correlation.
##
## Run from the repository root:
##     Rscript tests/reference/gee_links_reference.R        (about 30 s)
## It writes tests/reference/gee_links.json.  Doubles are written so that
## they round-trip exactly (see exact_json.R).
##
## The data are read back from the bundled CSV files
## (python/multilevel/datasets/data/) and checked against the R packages'
## copies, so the rows are exactly those the Python tests load.
##
## Two engines:
##   * "geepack": geepack::geeglm with geese.control(epsilon = 1e-12,
##     maxit = 200), for every pair geepack 1.3.9 can fit (its links are
##     identity, logit, probit, cloglog, log and inverse; its variances
##     gaussian, binomial, poisson and Gamma).  Every fit is recomputed with
##     gp_fit() (geepack_reimpl.R, a plain-R re-implementation) and the
##     script stops unless beta, alpha, phi, the robust, naive and
##     approximate-jackknife covariances agree to 1e-8.  The m-dependent
##     working correlation (multilevel's MDependent(m)) is geepack's
##     corstr = "userdefined" with one zcor column per lag 1..m (an
##     indicator of the pair's lag in waves), whose moment estimate is the
##     pooled weighted mean of e_j e_k over the pairs at each lag.
##   * "gp_fit": gp_fit() alone, for the pairs geepack refuses
##     (poisson("sqrt") and inverse.gaussian with every link: "mean.link
##     invalid").  gp_fit() takes the family's linkinv, mu.eta and variance
##     from R's family object, which is what makes it an independent check of
##     multilevel's links; gee_links_statsmodels.py adds statsmodels'
##     covariances at statsmodels' own estimates for these.
##
## QIC: geepack's QIC() for the geepack fits.  Because geepack ignores prior
## weights in the quasi-likelihood and has -y/(mu - log(mu)) for Gamma,
## "qic_mn" also gives the criteria with McCullagh & Nelder's quasi-
## likelihood sum w Q(mu; y) (gaussian -(y - mu)^2/2, binomial
## y log(mu/(1-mu)) + log(1-mu), poisson y log(mu) - mu, Gamma
## -y/mu - log(mu), inverse Gaussian -y/(2 mu^2) + 1/mu) and geepack's CIC
## (trace of the inverse naive covariance of the independence refit times
## the robust covariance), computed here from gp_fit() for both engines and
## checked against QIC() where geepack's quasi-likelihood is the same.

suppressPackageStartupMessages({
    library(geepack)
    library(MASS)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
source(file.path("tests", "reference", "geepack_reimpl.R"))
source(file.path("tests", "reference", "export_gee_datasets.R"))

out_path <- file.path("tests", "reference", "gee_links.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")
TOL <- 1e-8
EPS <- 1e-12
MAXIT <- 200L

## ---------------------------------------------------------------- data
sources <- gee_datasets()
sources$cbpp <- as.data.frame(lme4::cbpp)
for (name in names(sources)) {
    d <- read_dataset(name, data_dir)
    if (!same_values(d, sources[[name]]))
        stop(name, ": bundled data differ from the R package's copy")
    assign(name, d, envir = globalenv())
}
respiratory_gaps_rule <- "(subject + visit) % 5 == 0"
respiratory_gaps_drop <- with(respiratory, (subject + visit) %% 5 == 0)
respiratory_gaps <- respiratory[!respiratory_gaps_drop, ]
drops <- list(respiratory_gaps = list(base = "respiratory", rule = respiratory_gaps_rule,
                                      drop = respiratory_gaps_drop))

## zcor of the m-dependent structure: one row per within-cluster pair (j, k),
## j < k in row order (geepack's order), column l = 1 when |t_k - t_j| == l.
mdep_zcor <- function(id, waves, m) {
    t <- as.integer(as.factor(waves))
    rows <- list()
    for (ii in split(seq_along(id), factor(id, levels = unique(id)))) {
        s <- length(ii)
        if (s < 2) next
        pr <- t(utils::combn(s, 2))
        lag <- abs(t[ii][pr[, 2]] - t[ii][pr[, 1]])
        rows[[length(rows) + 1L]] <- outer(lag, seq_len(m), "==") * 1
    }
    z <- do.call(rbind, rows)
    colnames(z) <- paste0("lag", seq_len(m))
    z
}

## ---------------------------------------------------------------- models
## family: an R expression; response/weights: Python-syntax rules (null when
## not used); for cbind() binomial responses the response rule gives the
## proportion and the weights rule the trials, which is what geeglm uses.
spec <- function(data, formula, family, corstr, id, waves = NULL, engine = "geepack",
                 response_rule = NULL, weights_rule = NULL, mdep = NULL, anova = FALSE) {
    list(data = data, formula = formula, family = family, corstr = corstr, id = id,
         waves = waves, engine = engine, response_rule = response_rule,
         weights_rule = weights_rule, mdep = mdep, anova = anova)
}
ohio_f <- "resp ~ age + smoke"
resp_f <- "outcome ~ treat + sex + age + baseline"
cbpp_f <- "cbind(incidence, size - incidence) ~ period"
dietox_f <- "Weight ~ Time + Cu"
epil_f <- "y ~ lbase + trt + lage + V4"

models <- list(
    ohio_probit_exch = spec("ohio", ohio_f, quote(binomial("probit")), "exchangeable", "id",
                            anova = TRUE),
    ohio_cloglog_ar1 = spec("ohio", ohio_f, quote(binomial("cloglog")), "ar1", "id",
                            waves = "age"),
    ohio_log_exch = spec("ohio", ohio_f, quote(binomial("log")), "exchangeable", "id"),
    respiratory_probit_unstr = spec("respiratory", resp_f, quote(binomial("probit")),
                                    "unstructured", "subject", waves = "visit"),
    respiratory_cloglog_exch = spec("respiratory", resp_f, quote(binomial("cloglog")),
                                    "exchangeable", "subject", anova = TRUE),
    cbpp_probit_exch = spec("cbpp", cbpp_f, quote(binomial("probit")), "exchangeable", "herd",
                            response_rule = "incidence / size", weights_rule = "size"),
    dietox_gaussian_log_ar1 = spec("dietox", dietox_f, quote(gaussian("log")), "ar1", "Pig",
                                   waves = "Time"),
    dietox_gaussian_inverse_ar1 = spec("dietox", dietox_f, quote(gaussian("inverse")), "ar1",
                                       "Pig", waves = "Time"),
    dietox_poisson_identity_ar1 = spec("dietox", dietox_f, quote(poisson("identity")), "ar1",
                                       "Pig", waves = "Time"),
    dietox_gamma_inverse_ar1 = spec("dietox", dietox_f, quote(Gamma("inverse")), "ar1", "Pig",
                                    waves = "Time", anova = TRUE),
    dietox_gamma_identity_exch = spec("dietox", dietox_f, quote(Gamma("identity")),
                                      "exchangeable", "Pig"),
    epil_mdep2 = spec("epil", epil_f, quote(poisson()), "userdefined", "subject",
                      waves = "period", mdep = 2L),
    respiratory_gaps_mdep2 = spec("respiratory_gaps", resp_f, quote(binomial()), "userdefined",
                                  "subject", waves = "visit", mdep = 2L),
    ohio_probit_mdep1 = spec("ohio", ohio_f, quote(binomial("probit")), "userdefined", "id",
                             waves = "age", mdep = 1L),
    epil_poisson_sqrt_exch = spec("epil", epil_f, quote(poisson("sqrt")), "exchangeable",
                                  "subject", engine = "gp_fit"),
    epil_poisson_sqrt_ar1 = spec("epil", epil_f, quote(poisson("sqrt")), "ar1", "subject",
                                 waves = "period", engine = "gp_fit"),
    dietox_invgauss_mu2_exch = spec("dietox", dietox_f, quote(inverse.gaussian("1/mu^2")),
                                    "exchangeable", "Pig", engine = "gp_fit"),
    dietox_invgauss_inverse_ar1 = spec("dietox", dietox_f, quote(inverse.gaussian("inverse")),
                                       "ar1", "Pig", waves = "Time", engine = "gp_fit"),
    dietox_invgauss_log_exch = spec("dietox", dietox_f, quote(inverse.gaussian("log")),
                                    "exchangeable", "Pig", engine = "gp_fit"),
    dietox_invgauss_identity_ar1 = spec("dietox", dietox_f, quote(inverse.gaussian("identity")),
                                        "ar1", "Pig", waves = "Time", engine = "gp_fit")
)

## ---------------------------------------------------------------- helpers
control_call <- call("geese.control", epsilon = EPS, maxit = MAXIT)

model_call <- function(m, corstr = m$corstr, std.err = "san.se") {
    cl <- call("geeglm", formula = as.formula(m$formula, env = globalenv()),
               family = m$family, data = as.name(m$data), id = as.name(m$id),
               corstr = corstr, control = control_call)
    if (!is.null(m$waves) && corstr %in% c("ar1", "unstructured")) cl$waves <- as.name(m$waves)
    if (corstr == "userdefined") cl$zcor <- as.name(paste0("zcor_", m$key))
    if (std.err != "san.se") cl$std.err <- std.err
    cl
}

mat_rel <- function(a, b) {
    a <- as.matrix(a); b <- as.matrix(b)
    max(abs(a - b) / sqrt(abs(outer(diag(b), diag(b)))))
}
vec_rel <- function(a, b) {
    if (length(b) == 0L) return(0)
    max(abs(unname(a) - unname(b)) / pmax(abs(unname(b)), 1e-300))
}
verification <- list()
check <- function(key, what, value, tol = TOL) {
    verification[[length(verification) + 1L]] <<-
        list(model = key, check = what, max_discrepancy = value, tolerance = tol)
    if (!is.finite(value) || value > tol)
        stop(key, ": check failed: ", what, " (", value, " > ", tol, ")")
}
named <- function(x, nm = names(x)) list(names = I(as.character(nm)), values = I(unname(as.double(x))))
unname_mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }
se_of <- function(v) I(sqrt(diag(as.matrix(v))))

## McCullagh & Nelder's quasi-likelihood Q(mu; y), phi = 1.
quasi_mn <- function(family, y, mu) switch(family,
    gaussian = -(y - mu)^2 / 2,
    binomial = y * log(mu / (1 - mu)) + log(1 - mu),
    poisson = y * log(mu) - mu,
    Gamma = -y / mu - log(mu),
    inverse.gaussian = -y / (2 * mu^2) + 1 / mu)

## dpois() in poisson()$aic warns about the non-integer dietox weights (the
## quasi-Poisson fit itself does not use it); only those warnings are muffled.
quiet_nonint <- function(expr) withCallingHandlers(expr, warning = function(w)
    if (grepl("^non-integer x", conditionMessage(w))) invokeRestart("muffleWarning"))

## ---------------------------------------------------------------- one fit
fit_record <- function(key, m) {
    m$key <- key
    fam <- eval(m$family)
    cat(sprintf("fitting %-30s %s, %s(%s), %s [%s]\n", key, m$formula, fam$family,
                fam$link, m$corstr, m$engine))
    dat <- get(m$data, envir = globalenv())
    fml <- as.formula(m$formula, env = globalenv())
    mf <- model.frame(fml, dat)
    X <- model.matrix(fml, mf)
    Y <- model.response(mf)
    if (is.matrix(Y)) {              # cbind(successes, failures): proportion, trials as weights
        w <- rowSums(Y)
        y <- Y[, 1] / w
    } else {
        w <- rep(1, length(Y))
        y <- as.double(Y)
    }
    id <- dat[[m$id]]
    waves <- if (is.null(m$waves)) NULL else as.integer(as.factor(dat[[m$waves]]))
    zcor <- NULL
    if (!is.null(m$mdep)) {
        zcor <- mdep_zcor(id, dat[[m$waves]], m$mdep)
        assign(paste0("zcor_", key), zcor, envir = globalenv())
    }
    start <- coef(glm(fml, family = fam, data = dat))
    ## userdefined: geeglm gets no waves (geepack then indexes R by 1..n_i,
    ## see geepack_reimpl.R); the lags are in zcor.
    r <- gp_fit(X = X, y = y, id = id, w = w,
                waves = if (m$corstr == "userdefined") NULL else waves, family = fam,
                corstr = m$corstr, zcor = zcor, start = start, eps = EPS, maxit = MAXIT,
                jack = "jack")
    if (!r$converged) stop(key, ": gp_fit did not converge")
    est <- list(beta = r$beta, alpha = r$alpha, phi = r$phi, vbeta = r$vbeta,
                vbeta.naiv = r$vbeta.naiv, vbeta.ajs = r$vbeta.ajs)
    qic_geepack <- NULL
    anova_last <- NULL
    if (m$engine == "geepack") {
        g <- eval(model_call(m), globalenv())
        gj <- eval(model_call(m, std.err = "jack"), globalenv())
        a <- g$geese
        if (a$error != 0 || gj$geese$error != 0) stop(key, ": geeglm did not converge")
        if (!identical(gj$geese$beta, a$beta)) stop(key, ": jackknife refit moved beta")
        check(key, "gp_fit beta = geepack", vec_rel(r$beta, a$beta))
        check(key, "gp_fit alpha = geepack", vec_rel(r$alpha, a$alpha))
        check(key, "gp_fit phi = geepack", vec_rel(r$phi, a$gamma))
        check(key, "gp_fit robust vcov = geepack", mat_rel(r$vbeta, a$vbeta))
        check(key, "gp_fit naive vcov = geepack", mat_rel(r$vbeta.naiv, a$vbeta.naiv))
        check(key, "gp_fit jackknife vcov = geepack", mat_rel(r$vbeta.ajs, gj$geese$vbeta.ajs))
        if (any(as.double(g$y) != y) || any(as.double(a$weights) != w))
            stop(key, ": response or weights differ from geeglm's")
        est <- list(beta = a$beta, alpha = a$alpha, phi = a$gamma, vbeta = a$vbeta,
                    vbeta.naiv = a$vbeta.naiv, vbeta.ajs = gj$geese$vbeta.ajs)
        q <- QIC(g, env = globalenv())
        qic_geepack <- list(QIC = unname(q["QIC"]), QICu = unname(q["QICu"]),
                            quasi_lik = unname(q["Quasi Lik"]), CIC = unname(q["CIC"]),
                            params = unname(q["params"]), QICC = unname(q["QICC"]))
        if (m$anova) {
            tab <- anova(g)
            i <- nrow(tab)
            anova_last <- list(term = rownames(tab)[i], df = as.integer(tab$Df[i]),
                               X2 = tab$X2[i], p = tab[["P(>|Chi|)"]][i])
        }
    }
    ## QIC pieces from the estimates and a gp_fit independence refit.
    eta <- drop(X %*% est$beta)
    mu <- fam$linkinv(eta)
    ind <- gp_fit(X = X, y = y, id = id, w = w, family = fam, corstr = "independence",
                  start = start, eps = EPS, maxit = MAXIT)
    cic <- sum(diag(solve(ind$vbeta.naiv) %*% est$vbeta))
    p <- ncol(X)
    k <- p + length(est$alpha)
    K <- length(r$clusz)
    qn <- sum(w * quasi_mn(fam$family, y, mu))
    qic_mn <- list(QIC = -2 * (qn - cic), QICu = -2 * (qn - p), quasi_lik = qn, CIC = cic,
                   params = p, QICC = -2 * (qn - cic) + 2 * k * (k + 1) / (K - k - 1))
    if (!is.null(qic_geepack)) {
        check(key, "CIC = geepack's QIC() CIC", abs(cic - qic_geepack$CIC) / abs(cic), 1e-6)
        if (all(w == 1) && fam$family != "Gamma")
            check(key, "QIC = geepack's QIC()", abs(qic_mn$QIC - qic_geepack$QIC) / abs(qic_mn$QIC), 1e-6)
    }
    rec <- list(
        engine = m$engine,
        dataset = if (m$data %in% names(drops)) drops[[m$data]]$base else m$data,
        drop_rows = NULL,
        formula = m$formula,
        response = m$response_rule,
        family = fam$family,
        link = fam$link,
        corstr = if (is.null(m$mdep)) m$corstr else "m-dependent",
        mdep = m$mdep,
        id = m$id,
        waves = m$waves,
        weights = m$weights_rule,
        nobs = length(y),
        n_clusters = K,
        epsilon = EPS,
        iterations = r$iter,
        coefficients = named(est$beta, colnames(X)),
        se_robust = se_of(est$vbeta),
        vcov_robust = unname_mat(est$vbeta),
        se_naive = se_of(est$vbeta.naiv),
        vcov_naive = unname_mat(est$vbeta.naiv),
        vcov_jackknife = unname_mat(est$vbeta.ajs),
        alpha = named(est$alpha, if (length(est$alpha)) names(est$alpha) else character(0)),
        phi = unname(est$phi),
        qic_geepack = qic_geepack,
        qic_mn = qic_mn,
        anova_last = anova_last,
        fitted_head = I(unname(head(mu, 10)))
    )
    if (!is.null(m$mdep)) rec$alpha$names <- I(paste0("lag", seq_len(m$mdep)))
    if (m$data %in% names(drops)) {
        d <- drops[[m$data]]
        rec$drop_rows <- list(rule = d$rule, indices = I(which(d$drop) - 1L))
    }
    for (nm in c("drop_rows", "response", "mdep", "waves", "weights", "qic_geepack", "anova_last"))
        rec[nm] <- list(rec[[nm]])
    rec
}

t0 <- proc.time()[["elapsed"]]
records <- list()
for (key in names(models)) records[[key]] <- quiet_nonint(fit_record(key, models[[key]]))

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    geepack_version = as.character(packageDescription("geepack")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "geese.control(epsilon = 1e-12, maxit = 200); gp_fit(eps = 1e-12, maxit = 200)",
    models = records,
    verification = verification
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat(sprintf("wrote %s (%.1f s)\n", out_path, proc.time()[["elapsed"]] - t0))
