## Reference fits of generalized estimating equations with geepack::geeglm.
##
## Run from the repository root:
##     Rscript tests/reference/gee_reference.R
## It writes tests/reference/gee.json (see the section "gee.json" in
## tests/reference/GEE_ESTIMATORS.md for every field).  The data are the
## bundled datasets written by export_gee_datasets.R (and cbpp from
## export_datasets.R), in the same row order.  Doubles are written so that
## they round-trip exactly (see exact_json.R).
##
## Every fit is also recomputed with gp_fit() from geepack_reimpl.R, a plain
## R re-implementation of geepack's algorithm, and the script stops unless
## coefficients, alpha, phi, all variance matrices and the jackknife
## variances agree to 1e-10 (relative; matrices relative to
## sqrt(V_ii V_jj)).  The number of iterations, which geepack does not
## return, comes from gp_fit() and is confirmed by refitting geeglm with
## maxit = iterations (must converge, same estimates) and, where it is
## above 1, maxit = iterations - 1 (must report non-convergence).
## Takes a few minutes on one core.

suppressPackageStartupMessages({
    library(geepack)
    library(MASS)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "geepack_reimpl.R"))
source(file.path("tests", "reference", "export_gee_datasets.R"))

out_path <- file.path("tests", "reference", "gee.json")
TOL <- 1e-10
TIGHT_EPS <- 1e-12
TIGHT_MAXIT <- 200L
## gp_fit()'s leave-one-cluster-out refits (j1s, fij) are slow in plain R;
## they are cross-checked for data sets with at most this many clusters
## (all but ohio, whose 537 clusters would take minutes).
JACK_CHECK_MAX_K <- 150L

## ---------------------------------------------------------------- data
ds <- gee_datasets()
ohio <- ds$ohio
epil <- ds$epil
dietox <- ds$dietox
respiratory <- ds$respiratory
cbpp <- as.data.frame(lme4::cbpp)

## Rows dropped to create gaps.  The rules are Python expressions over the
## dataset's columns; the JSON also lists the dropped 0-based row positions.
respiratory_gaps_rule <- "(subject + visit) % 5 == 0"
respiratory_gaps_drop <- with(respiratory, (subject + visit) %% 5 == 0)
respiratory_gaps <- respiratory[!respiratory_gaps_drop, ]
respiratory_dropout_rule <- "((visit == 4) & (subject % 3 == 0)) | ((visit >= 3) & (subject % 5 == 0))"
respiratory_dropout_drop <- with(respiratory,
    (visit == 4 & subject %% 3 == 0) | (visit >= 3 & subject %% 5 == 0))
respiratory_dropout <- respiratory[!respiratory_dropout_drop, ]
drops <- list(
    respiratory_gaps = list(base = "respiratory", rule = respiratory_gaps_rule,
                            drop = respiratory_gaps_drop),
    respiratory_dropout = list(base = "respiratory", rule = respiratory_dropout_rule,
                               drop = respiratory_dropout_drop))

## Fixed working correlation for dietox_fixed: 0.9^|i - j| over Time 1..12.
dietox_fixed_cor <- outer(1:12, 1:12, function(a, b) 0.9^abs(a - b))
dietox_zcor <- fixed2Zcor(dietox_fixed_cor, id = dietox$Pig, waves = dietox$Time)

## ---------------------------------------------------------------- models
## data: name of the data frame actually fitted; dataset: bundled dataset
## it comes from.  response/weights/offset: Python-syntax rules (null when
## not used); for cbind() binomial responses the response rule gives the
## proportion and the weights rule the trials, which is what geeglm uses.
spec <- function(data, formula, family, corstr, id, waves = NULL,
                 weights = NULL, offset = NULL, weights_rule = NULL,
                 offset_rule = NULL, response_rule = NULL, scale.fix = FALSE,
                 zcor = NULL, fixed_cor = NULL, anova = FALSE, compare = NULL) {
    list(data = data, formula = formula, family = family, corstr = corstr,
         id = id, waves = waves, weights = weights, offset = offset,
         weights_rule = weights_rule, offset_rule = offset_rule,
         response_rule = response_rule, scale.fix = scale.fix, zcor = zcor,
         fixed_cor = fixed_cor, anova = anova, compare = compare)
}
ohio_f <- "resp ~ age + smoke"
epil_f <- "y ~ lbase + trt + lage + V4"
dietox_f <- "Weight ~ Time + Cu"
resp_f <- "outcome ~ treat + sex + age + baseline"
cbpp_f <- "cbind(incidence, size - incidence) ~ period"

models <- list(
    ohio_exch = spec("ohio", ohio_f, "binomial", "exchangeable", "id",
                     anova = TRUE, compare = "resp ~ age"),
    ohio_ar1 = spec("ohio", ohio_f, "binomial", "ar1", "id", waves = "age"),
    ohio_indep = spec("ohio", ohio_f, "binomial", "independence", "id"),
    ohio_exch_scalefix = spec("ohio", ohio_f, "binomial", "exchangeable", "id",
                              scale.fix = TRUE),
    epil_exch = spec("epil", epil_f, "poisson", "exchangeable", "subject"),
    epil_ar1 = spec("epil", epil_f, "poisson", "ar1", "subject", waves = "period"),
    epil_indep = spec("epil", epil_f, "poisson", "independence", "subject"),
    epil_exch_scalefix = spec("epil", epil_f, "poisson", "exchangeable", "subject",
                              scale.fix = TRUE),
    epil_offset_exch = spec("epil", "y ~ trt + lage + V4", "poisson", "exchangeable",
                            "subject", offset = quote(log(base / 4)),
                            offset_rule = "log(base / 4)"),
    epil_offset_exch_scalefix = spec("epil", "y ~ trt + lage + V4", "poisson",
                                     "exchangeable", "subject",
                                     offset = quote(log(base / 4)),
                                     offset_rule = "log(base / 4)", scale.fix = TRUE),
    epil_weights_exch = spec("epil", epil_f, "poisson", "exchangeable", "subject",
                             weights = quote(1 + (subject %% 3)),
                             weights_rule = "1 + (subject % 3)"),
    dietox_ar1 = spec("dietox", dietox_f, "gaussian", "ar1", "Pig", waves = "Time",
                      anova = TRUE),
    dietox_exch = spec("dietox", dietox_f, "gaussian", "exchangeable", "Pig"),
    dietox_gamma_ar1 = spec("dietox", dietox_f, "Gamma_log", "ar1", "Pig",
                            waves = "Time"),
    dietox_fixed = spec("dietox", dietox_f, "gaussian", "fixed", "Pig", waves = "Time",
                        zcor = "dietox_zcor", fixed_cor = dietox_fixed_cor),
    respiratory_unstr = spec("respiratory", resp_f, "binomial", "unstructured",
                             "subject", waves = "visit"),
    respiratory_exch = spec("respiratory", resp_f, "binomial", "exchangeable",
                            "subject"),
    respiratory_unstr_dropout = spec("respiratory_dropout", resp_f, "binomial",
                                     "unstructured", "subject", waves = "visit"),
    respiratory_ar1_gaps = spec("respiratory_gaps", resp_f, "binomial", "ar1",
                                "subject", waves = "visit"),
    respiratory_ar1_gaps_nowaves = spec("respiratory_gaps", resp_f, "binomial", "ar1",
                                        "subject"),
    respiratory_exch_gaps = spec("respiratory_gaps", resp_f, "binomial",
                                 "exchangeable", "subject", waves = "visit"),
    cbpp_exch = spec("cbpp", cbpp_f, "binomial", "exchangeable", "herd",
                     response_rule = "incidence / size", weights_rule = "size"),
    cbpp_ar1 = spec("cbpp", cbpp_f, "binomial", "ar1", "herd", waves = "period",
                    response_rule = "incidence / size", weights_rule = "size"),
    cbpp_indep = spec("cbpp", cbpp_f, "binomial", "independence", "herd",
                      response_rule = "incidence / size", weights_rule = "size")
)

family_object <- function(name) switch(name,
    binomial = binomial(), poisson = poisson(), gaussian = gaussian(),
    Gamma_log = Gamma(link = "log"))

## ---------------------------------------------------------------- helpers
model_call <- function(m, std.err = "san.se", control = NULL, corstr = m$corstr) {
    cl <- call("geeglm", formula = as.formula(m$formula, env = globalenv()),
               family = family_object(m$family), data = as.name(m$data),
               id = as.name(m$id), corstr = corstr)
    if (!is.null(m$waves)) cl$waves <- as.name(m$waves)
    if (!is.null(m$weights)) cl$weights <- m$weights
    if (!is.null(m$offset)) cl$offset <- m$offset
    if (!is.null(m$zcor)) cl$zcor <- as.name(m$zcor)
    if (m$scale.fix) cl$scale.fix <- TRUE
    if (std.err != "san.se") cl$std.err <- std.err
    if (!is.null(control)) cl$control <- control
    cl
}

glm_call <- function(m) {
    cl <- call("glm", formula = as.formula(m$formula, env = globalenv()),
               family = family_object(m$family), data = as.name(m$data))
    if (!is.null(m$weights)) cl$weights <- m$weights
    if (!is.null(m$offset)) cl$offset <- m$offset
    cl
}

mat_rel <- function(a, b) {
    a <- as.matrix(a); b <- as.matrix(b)
    s <- sqrt(abs(outer(diag(b), diag(b))))
    max(abs(a - b) / s)
}
vec_rel <- function(a, b) {
    if (length(b) == 0L) return(0)
    max(abs(unname(a) - unname(b)) / pmax(abs(unname(b)), 1e-300))
}
check <- function(key, what, value) {
    if (!is.finite(value) || value > TOL)
        stop(key, ": geepack and gp_fit() disagree on ", what, " (", value, ")")
}
named <- function(x) list(names = I(as.character(names(x))), values = I(unname(as.double(x))))
unname_mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }
se_of <- function(v) I(sqrt(diag(as.matrix(v))))

## ---------------------------------------------------------------- one fit
fit_record <- function(key, m) {
    cat(sprintf("fitting %-28s %s, %s, %s\n", key, m$formula, m$family, m$corstr))
    g <- eval(model_call(m), globalenv())
    a <- g$geese
    dat <- get(m$data, envir = globalenv())
    start <- coef(eval(glm_call(m), globalenv()))

    ## jackknife refits
    gj <- lapply(c(jack = "jack", j1s = "j1s", fij = "fij"), function(se)
        eval(model_call(m, std.err = se), globalenv()))
    for (se in names(gj))
        if (!identical(gj[[se]]$geese$beta, a$beta)) stop(key, ": jackknife refit moved beta")
    vj <- list(jack = gj$jack$geese$vbeta.ajs, j1s = gj$j1s$geese$vbeta.j1s,
               fij = gj$fij$geese$vbeta.fij)

    ## re-implementation
    waves <- if (is.null(m$waves)) NULL else as.integer(as.factor(dat[[m$waves]]))
    r <- gp_fit(X = model.matrix(g), y = g$y, id = g$id, w = a$weights,
                offset = if (is.null(m$offset)) NULL else g$offset,
                waves = waves, family = family_object(m$family),
                corstr = m$corstr,
                zcor = if (is.null(m$zcor)) NULL else matrix(get(m$zcor), ncol = 1),
                scale.fix = m$scale.fix, start = start,
                jack = if (length(unique(g$id)) <= JACK_CHECK_MAX_K) c("jack", "j1s", "fij") else "jack")
    check(key, "beta", vec_rel(a$beta, r$beta))
    check(key, "alpha", vec_rel(a$alpha, r$alpha))
    check(key, "phi", vec_rel(a$gamma, r$phi))
    check(key, "vbeta", mat_rel(a$vbeta, r$vbeta))
    check(key, "vbeta.naiv", mat_rel(a$vbeta.naiv, r$vbeta.naiv))
    check(key, "vbeta.ajs", mat_rel(vj$jack, r$vbeta.ajs))
    if (!is.null(r$vbeta.j1s)) {
        check(key, "vbeta.j1s", mat_rel(vj$j1s, r$vbeta.j1s))
        check(key, "vbeta.fij", mat_rel(vj$fij, r$vbeta.fij))
    }
    if (!m$scale.fix) check(key, "vgamma", mat_rel(a$vgamma, r$vgamma))
    if (!is.null(r$valpha)) check(key, "valpha", mat_rel(a$valpha, r$valpha))
    if (!r$converged || a$error != 0) stop(key, ": not converged")

    ## iteration count confirmed with maxit = iter (and iter - 1)
    g_it <- eval(model_call(m, control = call("geese.control", maxit = r$iter)), globalenv())
    if (g_it$geese$error != 0 || !identical(g_it$geese$beta, a$beta))
        stop(key, ": maxit = ", r$iter, " does not reproduce the fit")
    if (r$iter > 1) {
        g_it1 <- eval(model_call(m, control = call("geese.control", maxit = r$iter - 1L)),
                      globalenv())
        if (g_it1$geese$error != 1) stop(key, ": converged with maxit = iter - 1")
    }

    ## tightly converged fit
    gt <- eval(model_call(m, control = call("geese.control", epsilon = TIGHT_EPS,
                                             maxit = TIGHT_MAXIT)), globalenv())
    rt <- gp_fit(X = model.matrix(g), y = g$y, id = g$id, w = a$weights,
                 offset = if (is.null(m$offset)) NULL else g$offset,
                 waves = waves, family = family_object(m$family), corstr = m$corstr,
                 zcor = if (is.null(m$zcor)) NULL else matrix(get(m$zcor), ncol = 1),
                 scale.fix = m$scale.fix, start = start, eps = TIGHT_EPS,
                 maxit = TIGHT_MAXIT)
    if (gt$geese$error != 0 || !rt$converged) stop(key, ": tight fit did not converge")
    check(key, "tight beta", vec_rel(gt$geese$beta, rt$beta))
    check(key, "tight vbeta", mat_rel(gt$geese$vbeta, rt$vbeta))

    ## QIC (geepack refits an independence model from the call)
    qic <- QIC(g, env = globalenv())

    K <- length(a$clusz)
    rec <- list(
        dataset = if (m$data %in% names(drops)) drops[[m$data]]$base else m$data,
        drop_rows = NULL,
        formula = m$formula,
        response = m$response_rule,
        family = family_object(m$family)$family,
        link = family_object(m$family)$link,
        corstr = m$corstr,
        id = m$id,
        waves = m$waves,
        weights = m$weights_rule,
        offset = m$offset_rule,
        scale_fix = m$scale.fix,
        fixed_correlation = m$fixed_cor,
        nobs = length(g$y),
        n_clusters = K,
        max_cluster_size = max(a$clusz),
        start = named(start),
        phi0 = r$phi0,
        coefficients = named(a$beta),
        se_robust = se_of(a$vbeta),
        vcov_robust = unname_mat(a$vbeta),
        se_naive = se_of(a$vbeta.naiv),
        vcov_naive = unname_mat(a$vbeta.naiv),
        alpha = named(a$alpha),
        phi = unname(a$gamma),
        alpha_se = if (length(a$alpha)) se_of(a$valpha) else I(numeric(0)),
        vcov_alpha = if (length(a$alpha)) unname_mat(a$valpha) else list(),
        phi_se = if (m$scale.fix) NULL else sqrt(unname(a$vgamma[1, 1])),
        jackknife = lapply(vj, function(v) list(se = se_of(v), vcov = unname_mat(v))),
        iterations = r$iter,
        error = a$error,
        tight = list(
            epsilon = TIGHT_EPS,
            maxit = TIGHT_MAXIT,
            iterations = rt$iter,
            coefficients = named(gt$geese$beta),
            se_robust = se_of(gt$geese$vbeta),
            vcov_robust = unname_mat(gt$geese$vbeta),
            vcov_naive = unname_mat(gt$geese$vbeta.naiv),
            alpha = named(gt$geese$alpha),
            phi = unname(gt$geese$gamma)),
        qic = list(QIC = unname(qic["QIC"]), QICu = unname(qic["QICu"]),
                   quasi_lik = unname(qic["Quasi Lik"]), CIC = unname(qic["CIC"]),
                   params = unname(qic["params"]), QICC = unname(qic["QICC"])),
        fitted_head = I(unname(head(as.vector(fitted(g)), 10))),
        anova = NULL,
        anova_compare = NULL
    )
    if (m$data %in% names(drops)) {
        d <- drops[[m$data]]
        rec$drop_rows <- list(rule = d$rule, indices = I(which(d$drop) - 1L))
    }
    rec["drop_rows"] <- list(rec$drop_rows)
    if (m$anova) {
        tab <- anova(g)
        rec$anova <- lapply(seq_len(nrow(tab)), function(i)
            list(term = rownames(tab)[i], df = as.integer(tab$Df[i]),
                 X2 = tab$X2[i], p = tab[["P(>|Chi|)"]][i]))
    }
    if (!is.null(m$compare)) {
        m0 <- m
        m0$formula <- m$compare
        g0 <- eval(model_call(m0), globalenv())
        tab <- anova(g, g0)
        rec$anova_compare <- list(submodel_formula = m$compare,
                                  df = as.integer(tab$Df[1]), X2 = tab$X2[1],
                                  p = tab[["P(>|Chi|)"]][1])
    }
    ## keep explicit nulls
    for (nm in c("response", "waves", "weights", "offset", "fixed_correlation",
                 "phi_se", "anova", "anova_compare", "drop_rows"))
        rec[nm] <- list(switch(nm, response = m$response_rule, waves = m$waves,
                               weights = m$weights_rule, offset = m$offset_rule,
                               fixed_correlation = m$fixed_cor, rec[[nm]]))
    rec
}

records <- list()
for (key in names(models)) records[[key]] <- fit_record(key, models[[key]])

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    geepack_version = as.character(packageDescription("geepack")$Version),
    mass_version = as.character(packageDescription("MASS")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "geese.control() defaults: epsilon = 1e-4, maxit = 25; std.err = 'san.se'",
    models = records
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
