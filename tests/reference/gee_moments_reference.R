## Reference fits for gee(moments = "gee"): R's gee package (Carey's Cgee),
## whose moment estimators of the scale and the working correlation differ
## from geepack's.
##
## Run from the repository root (needs r-cran-gee, r-cran-geepack):
##     Rscript tests/reference/gee_moments_reference.R
## It writes tests/reference/gee_moments.json (layout: tests/reference/README.md,
## section "gee_moments.json"), ~5 s. The data are the bundled CSVs
## (python/multilevel/datasets/data), read back with their schemas, so R fits
## exactly the rows the Python tests load. Doubles round-trip exactly
## (exact_json.R).
##
## R gee (4.13, v4.4compat = FALSE), from src/ugee.c, with r the Pearson
## residual (binomial cbind(): (y - N p) / sqrt(N p (1 - p))), N rows, p
## coefficients, K clusters of n_i rows:
##   phi          = sum r^2 / (N - p)
##   exchangeable : alpha = sum_{j<k} r_j r_k / ((M - p) phi), M = sum n_i (n_i - 1) / 2
##   AR-M, Mv = 1 : alpha = sum_i mean_t(r_t r_{t+1}) / sum_i mean_t(r_t^2)
##   stat_M_dep   : alpha_k = sum_i mean_t(r_t r_{t+k}) / sum_i mean_t(r_t^2)
##                  (means over cluster i's pairs; every n_i > Mv, as gee requires)
##   unstructured : alpha_ab = sum_i r_ia r_ib / (K2 phi_c), K2 = #{n_i > 1},
##                  phi_c = mean_i mean_t(r_t^2)
## in row order within the cluster (gee has no waves). The iteration
## computes alpha at beta, then beta <- beta + H^-1 U, and stops on the
## relative change max |beta_old / beta - 1| <= tol; the working correlation
## returned is the last one used, i.e. from the previous beta. scale.fix
## fixes phi only in the naive variance (phi = scale.value); alpha keeps
## dividing by the estimated phi. The script re-derives phi and alpha from
## every fit's fitted values with these formulas and stops unless they agree
## (phi to 1e-12, alpha to 1e-8: it was computed at the previous beta).
##
## Each record also notes geepack's estimates (geeglm, epsilon = 1e-12) for
## the same model where geepack has the structure (not stat_M_dep), to show
## how far apart the two sets of estimators are.

suppressPackageStartupMessages({
    library(gee)
    library(geepack)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

out_path <- file.path("tests", "reference", "gee_moments.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")
GEE_TOL <- 1e-12
GEE_MAXITER <- 200L

## ---------------------------------------------------------------- data
ohio <- read_dataset("ohio", data_dir)
epil <- read_dataset("epil", data_dir)
dietox <- read_dataset("dietox", data_dir)
respiratory <- read_dataset("respiratory", data_dir)
cbpp <- read_dataset("cbpp", data_dir)
## Monotone dropout (unbalanced clusters of 2, 3 and 4 rows): gee.json's rule.
respiratory_dropout_rule <- "((visit == 4) & (subject % 3 == 0)) | ((visit >= 3) & (subject % 5 == 0))"
respiratory_dropout_drop <- with(respiratory,
    (visit == 4 & subject %% 3 == 0) | (visit >= 3 & subject %% 5 == 0))
respiratory_dropout <- respiratory[!respiratory_dropout_drop, ]
drops <- list(respiratory_dropout = list(base = "respiratory", rule = respiratory_dropout_rule,
                                         drop = respiratory_dropout_drop))
## Gaussian unstructured fits on Orthodont (dietox's weighings are so correlated, with a
## variance growing over time, that gee's unstructured and banded estimates are not positive definite).
Orthodont <- read_dataset("Orthodont", data_dir)

## ---------------------------------------------------------------- models
## corstr is multilevel's name; Mv the lag of "m-dependent". scale_value:
## NULL (phi estimated) or the value R gee fixes phi at (scale.fix = TRUE).
spec <- function(data, formula, family, corstr, id, Mv = 1L, scale_value = NULL,
                 response_rule = NULL, weights_rule = NULL) {
    list(data = data, formula = formula, family = family, corstr = corstr, id = id,
         Mv = as.integer(Mv), scale_value = scale_value, response_rule = response_rule,
         weights_rule = weights_rule)
}
ohio_f <- "resp ~ age + smoke"
epil_f <- "y ~ lbase + trt + lage + V4"
dietox_f <- "Weight ~ Time + Cu"
resp_f <- "outcome ~ treat + sex + age + baseline"
cbpp_f <- "cbind(incidence, size - incidence) ~ period"
orth_f <- "distance ~ age + Sex"
cbpp_spec <- function(corstr, scale_value = NULL)
    spec("cbpp", cbpp_f, "binomial", corstr, "herd", scale_value = scale_value,
         response_rule = "incidence / size", weights_rule = "size")

models <- list(
    ohio_exch = spec("ohio", ohio_f, "binomial", "exchangeable", "id"),
    ohio_exch_scale1 = spec("ohio", ohio_f, "binomial", "exchangeable", "id", scale_value = 1),
    ohio_ar1 = spec("ohio", ohio_f, "binomial", "ar1", "id"),
    ohio_ar1_scale1 = spec("ohio", ohio_f, "binomial", "ar1", "id", scale_value = 1),
    ohio_unstr = spec("ohio", ohio_f, "binomial", "unstructured", "id"),
    epil_exch = spec("epil", epil_f, "poisson", "exchangeable", "subject"),
    epil_exch_scale1 = spec("epil", epil_f, "poisson", "exchangeable", "subject", scale_value = 1),
    epil_ar1 = spec("epil", epil_f, "poisson", "ar1", "subject"),
    epil_unstr = spec("epil", epil_f, "poisson", "unstructured", "subject"),
    epil_unstr_scale1 = spec("epil", epil_f, "poisson", "unstructured", "subject", scale_value = 1),
    epil_mdep2 = spec("epil", epil_f, "poisson", "m-dependent", "subject", Mv = 2),
    dietox_exch = spec("dietox", dietox_f, "gaussian", "exchangeable", "Pig"),
    dietox_exch_scale2 = spec("dietox", dietox_f, "gaussian", "exchangeable", "Pig", scale_value = 2),
    dietox_ar1 = spec("dietox", dietox_f, "gaussian", "ar1", "Pig"),
    respiratory_mdep2 = spec("respiratory", resp_f, "binomial", "m-dependent", "subject", Mv = 2),
    orthodont_unstr = spec("Orthodont", orth_f, "gaussian", "unstructured", "Subject"),
    orthodont_ar1_scale1 = spec("Orthodont", orth_f, "gaussian", "ar1", "Subject", scale_value = 1),
    respiratory_exch = spec("respiratory", resp_f, "binomial", "exchangeable", "subject"),
    respiratory_unstr = spec("respiratory", resp_f, "binomial", "unstructured", "subject"),
    respiratory_dropout_exch = spec("respiratory_dropout", resp_f, "binomial", "exchangeable", "subject"),
    respiratory_dropout_ar1 = spec("respiratory_dropout", resp_f, "binomial", "ar1", "subject"),
    respiratory_dropout_unstr = spec("respiratory_dropout", resp_f, "binomial", "unstructured", "subject"),
    cbpp_exch = cbpp_spec("exchangeable"),
    cbpp_exch_scale1 = cbpp_spec("exchangeable", scale_value = 1),
    cbpp_unstr = cbpp_spec("unstructured")
)

family_object <- function(name) switch(name, binomial = binomial(), poisson = poisson(),
                                       gaussian = gaussian())
gee_corstr <- function(corstr) switch(corstr, exchangeable = "exchangeable", ar1 = "AR-M",
                                      "m-dependent" = "stat_M_dep", unstructured = "unstructured")

## ---------------------------------------------------------------- helpers
gee_call <- function(m) {
    cl <- call("gee", formula = as.formula(m$formula, env = globalenv()), id = as.name(m$id),
               data = as.name(m$data), family = family_object(m$family),
               corstr = gee_corstr(m$corstr), tol = GEE_TOL, maxiter = GEE_MAXITER)
    if (m$corstr %in% c("ar1", "m-dependent")) cl$Mv <- m$Mv
    if (!is.null(m$scale_value)) {
        cl$scale.fix <- TRUE
        cl$scale.value <- m$scale_value
    }
    cl
}
geepack_call <- function(m) {
    cl <- call("geeglm", formula = as.formula(m$formula, env = globalenv()),
               family = family_object(m$family), data = as.name(m$data), id = as.name(m$id),
               corstr = m$corstr, control = geese.control(epsilon = 1e-12, maxit = 200L))
    if (!is.null(m$scale_value)) cl$scale.fix <- TRUE
    cl
}
quiet <- function(expr) {
    value <- NULL
    utils::capture.output(value <- suppressMessages(withCallingHandlers(expr, warning = function(w) {
        if (grepl("Scale parameter fixed", conditionMessage(w))) invokeRestart("muffleWarning")
    })))
    value
}
named <- function(x) list(names = I(as.character(names(x))), values = I(unname(as.double(x))))
unname_mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }
se_of <- function(v) I(sqrt(diag(as.matrix(v))))
rel <- function(a, b) if (length(b) == 0L) 0 else max(abs(a - b) / pmax(abs(b), 1e-300))

## alpha in multilevel's order from gee's working correlation (T x T)
alpha_from_matrix <- function(R, m) {
    switch(m$corstr,
           exchangeable = R[1, 2],
           ar1 = R[1, 2],
           "m-dependent" = R[1, 1 + seq_len(m$Mv)],
           unstructured = t(R)[lower.tri(R)])  # (1,2), (1,3), ..., (2,3), ...: by row of the upper triangle
}

## R gee's estimators from Pearson residuals r (a list of per-cluster vectors), written out again.
rederive <- function(r, m, p) {
    N <- sum(lengths(r))
    n <- lengths(r)
    phi <- sum(unlist(r)^2) / (N - p)
    mean_sq <- vapply(r, function(e) mean(e^2), 0)
    lag_mean <- function(k) {
        has <- n > k
        num <- vapply(r[has], function(e) mean(e[-seq_len(k)] * e[seq_len(length(e) - k)]), 0)
        sum(num) / sum(mean_sq[has])
    }
    alpha <- switch(m$corstr,
        exchangeable = {
            s <- sum(vapply(r, function(e) (sum(e)^2 - sum(e^2)) / 2, 0))
            M <- sum(n * (n - 1) / 2)
            s / ((M - p) * phi)
        },
        ar1 = lag_mean(1),
        "m-dependent" = vapply(seq_len(m$Mv), lag_mean, 0),
        unstructured = {
            Tn <- max(n)
            S <- matrix(0, Tn, Tn)
            for (e in r) S[seq_along(e), seq_along(e)] <- S[seq_along(e), seq_along(e)] + outer(e, e)
            phi_c <- mean(mean_sq)
            A <- S / (sum(n > 1) * phi_c)
            t(A)[lower.tri(A)]
        })
    list(phi = phi, alpha = alpha)
}

## ---------------------------------------------------------------- one fit
fit_record <- function(key, m) {
    cat(sprintf("fitting %-26s %s, %s, %s\n", key, m$formula, m$family, m$corstr))
    dat <- get(m$data, envir = globalenv())
    g <- quiet(eval(gee_call(m), globalenv()))
    if (g$error != 0) stop(key, ": gee reports error ", g$error)
    if (g$iterations >= GEE_MAXITER) stop(key, ": gee did not converge")
    p <- length(g$coefficients)
    X <- model.matrix(as.formula(m$formula), dat)
    eta <- drop(X %*% g$coefficients)
    fam <- family_object(m$family)
    pr <- fam$linkinv(eta)
    if (grepl("^cbind", m$formula)) {
        trials <- dat$size
        r <- (dat$incidence - trials * pr) / sqrt(trials * pr * (1 - pr))
    } else {
        r <- (g$y - pr) / sqrt(fam$variance(pr))
    }
    id <- dat[[m$id]]
    r_by <- split(r, factor(id, levels = unique(id)))
    again <- rederive(r_by, m, p)
    alpha <- alpha_from_matrix(g$working.correlation, m)
    phi_est <- again$phi
    if (is.null(m$scale_value) && rel(g$scale, phi_est) > 1e-12)
        stop(key, ": phi re-derived ", phi_est, " != gee's ", g$scale)
    if (!is.null(m$scale_value) && g$scale != m$scale_value) stop(key, ": scale not fixed")
    if (rel(alpha, again$alpha) > 1e-8) stop(key, ": alpha re-derived differs by ", rel(alpha, again$alpha))

    gp <- NULL
    if (m$corstr != "m-dependent") {
        fit <- eval(geepack_call(m), globalenv())
        if (fit$geese$error != 0) stop(key, ": geepack did not converge")
        gp <- list(coefficients = named(fit$geese$beta), alpha = I(unname(fit$geese$alpha)),
                   phi = unname(fit$geese$gamma), se_robust = se_of(fit$geese$vbeta))
    }
    rec <- list(
        dataset = if (m$data %in% names(drops)) drops[[m$data]]$base else m$data,
        drop_rows = NULL,
        formula = m$formula,
        response = m$response_rule,
        family = fam$family,
        link = fam$link,
        corstr = m$corstr,
        gee_corstr = gee_corstr(m$corstr),
        mdep = if (m$corstr == "m-dependent") m$Mv else NULL,
        id = m$id,
        waves = NULL,
        weights = m$weights_rule,
        offset = NULL,
        scale_value = m$scale_value,
        nobs = length(g$y),
        n_clusters = length(unique(id)),
        max_cluster_size = max(lengths(r_by)),
        iterations = g$iterations,
        coefficients = named(g$coefficients),
        se_robust = se_of(g$robust.variance),
        vcov_robust = unname_mat(g$robust.variance),
        se_naive = se_of(g$naive.variance),
        vcov_naive = unname_mat(g$naive.variance),
        scale = g$scale,
        phi_estimated = phi_est,
        alpha = I(unname(as.double(alpha))),
        working_correlation = unname_mat(g$working.correlation),
        geepack = gp
    )
    if (m$data %in% names(drops)) {
        d <- drops[[m$data]]
        rec$drop_rows <- list(rule = d$rule, indices = I(which(d$drop) - 1L))
    }
    ## keep explicit nulls
    for (nm in c("drop_rows", "response", "mdep", "waves", "weights", "offset", "scale_value", "geepack"))
        rec[nm] <- list(switch(nm, response = m$response_rule, weights = m$weights_rule,
                               scale_value = m$scale_value, rec[[nm]]))
    rec
}

records <- list()
for (key in names(models)) records[[key]] <- fit_record(key, models[[key]])

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    gee_version = as.character(packageDescription("gee")$Version),
    geepack_version = as.character(packageDescription("geepack")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = sprintf("gee(tol = %g, maxiter = %d), v4.4compat = FALSE; geepack: geese.control(epsilon = 1e-12, maxit = 200)",
                      GEE_TOL, GEE_MAXITER),
    models = records
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
