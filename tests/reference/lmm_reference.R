## Reference fits of linear mixed models with lme4::lmer.
##
## Run from the repository root:
##     Rscript tests/reference/lmm_reference.R
## It writes tests/reference/lmm.json (see tests/reference/README.md for the
## meaning of every field).  All fits use lme4's defaults (lmerControl()).
## Doubles are written so that they round-trip exactly (see exact_json.R).

suppressPackageStartupMessages({
    library(Matrix)
    library(lme4)
})
source(file.path("tests", "reference", "exact_json.R"))

out_path <- file.path("tests", "reference", "lmm.json")

## The datasets are looked up by name in the global environment when the
## model calls are evaluated, so that update()/getME(, "devfun") can refit.
sleepstudy <- lme4::sleepstudy
Dyestuff <- lme4::Dyestuff
Penicillin <- lme4::Penicillin
Pastes <- lme4::Pastes
InstEval <- lme4::InstEval

## key, dataset, formula, REML, weights rule (R / JSON), offset rule (R / JSON)
spec <- function(dataset, formula, reml, weights = NULL, offset = NULL,
                 weights_rule = NULL, offset_rule = NULL, ranef = TRUE) {
    list(dataset = dataset, formula = formula, reml = reml,
         weights = weights, offset = offset,
         weights_rule = weights_rule, offset_rule = offset_rule,
         ranef = ranef)
}

sleep_f <- "Reaction ~ Days + (Days | Subject)"
sleep_uncorr_f <- "Reaction ~ Days + (Days || Subject)"
sleep_int_f <- "Reaction ~ Days + (1 | Subject)"
dyestuff_f <- "Yield ~ 1 + (1 | Batch)"
penicillin_f <- "diameter ~ 1 + (1 | plate) + (1 | sample)"
pastes_f <- "strength ~ 1 + (1 | batch/cask)"
insteval_f <- "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"

models <- list(
    sleepstudy_reml = spec("sleepstudy", sleep_f, TRUE),
    sleepstudy_ml = spec("sleepstudy", sleep_f, FALSE),
    sleepstudy_uncorr_reml = spec("sleepstudy", sleep_uncorr_f, TRUE),
    sleepstudy_uncorr_ml = spec("sleepstudy", sleep_uncorr_f, FALSE),
    dyestuff_reml = spec("Dyestuff", dyestuff_f, TRUE),
    dyestuff_ml = spec("Dyestuff", dyestuff_f, FALSE),
    penicillin_reml = spec("Penicillin", penicillin_f, TRUE),
    penicillin_ml = spec("Penicillin", penicillin_f, FALSE),
    pastes_reml = spec("Pastes", pastes_f, TRUE),
    pastes_ml = spec("Pastes", pastes_f, FALSE),
    insteval_ml = spec("InstEval", insteval_f, FALSE, ranef = FALSE),
    insteval_reml = spec("InstEval", insteval_f, TRUE, ranef = FALSE),
    sleepstudy_weights_reml = spec("sleepstudy", sleep_f, TRUE,
                                   weights = quote(1 + (Days %% 3)),
                                   weights_rule = "1 + (Days % 3)"),
    sleepstudy_offset_ml = spec("sleepstudy", sleep_int_f, FALSE,
                                offset = quote(2 * Days),
                                offset_rule = "2 * Days"),
    sleepstudy_intercept_ml = spec("sleepstudy", sleep_int_f, FALSE),
    ## 2 * Days lies in the span of the fixed-effects design (it only shifts
    ## the Days coefficient by 2), so sleepstudy_offset_ml has the same theta
    ## and objective as sleepstudy_intercept_ml.  This extra fit uses an
    ## offset outside that span, so the offset changes everything.
    sleepstudy_offset_sq_ml = spec("sleepstudy", sleep_int_f, FALSE,
                                   offset = quote(0.5 * Days^2),
                                   offset_rule = "0.5 * Days**2")
)

## Build the unevaluated lmer() call for a model specification.
model_call <- function(m) {
    cl <- call("lmer", formula = as.formula(m$formula, env = globalenv()),
               data = as.name(m$dataset), REML = m$reml)
    if (!is.null(m$weights)) cl$weights <- m$weights
    if (!is.null(m$offset)) cl$offset <- m$offset
    cl
}

rel_diff <- function(a, b) abs(a - b) / max(abs(b), 1e-300)

## Diagonal of each level's conditional variance matrix from ranef(condVar=TRUE).
condvar_diagonals <- function(re_df) {
    pv <- attr(re_df, "postVar")
    if (is.null(pv)) pv <- attr(re_df, "condVar")
    ## One row per level: the diagonal of that level's q x q matrix.
    per_array <- function(a) {
        q <- dim(a)[1]
        n <- dim(a)[3]
        out <- matrix(NA_real_, nrow = n, ncol = q)
        for (i in seq_len(n)) out[i, ] <- diag(matrix(a[, , i], q, q))
        out
    }
    if (is.list(pv)) {
        ## Several terms for the same grouping factor (e.g. (Days || Subject)):
        ## one array per term, in the order of the data frame's columns.
        out <- do.call(cbind, lapply(pv, per_array))
    } else {
        out <- per_array(pv)
    }
    stopifnot(nrow(out) == nrow(re_df), ncol(out) == ncol(re_df))
    out
}

ranef_record <- function(fit) {
    re <- ranef(fit, condVar = TRUE)
    out <- list()
    for (g in names(re)) {
        d <- re[[g]]
        values <- as.matrix(d)
        dimnames(values) <- NULL
        cv <- condvar_diagonals(d)
        dimnames(cv) <- NULL
        out[[g]] <- list(levels = I(rownames(d)),
                         columns = I(colnames(d)),
                         values = values,
                         condvar = cv)
    }
    out
}

varcorr_records <- function(fit) {
    vc <- as.data.frame(VarCorr(fit))
    lapply(seq_len(nrow(vc)), function(i) {
        list(grp = as.character(vc$grp[i]),
             var1 = as.character(vc$var1[i]),
             var2 = as.character(vc$var2[i]),
             vcov = vc$vcov[i],
             sdcor = vc$sdcor[i])
    })
}

fit_record <- function(key, m) {
    cat(sprintf("fitting %-24s %s (REML = %s)\n", key, m$formula, m$reml))
    cl <- model_call(m)
    fit <- eval(cl, globalenv())
    stopifnot(isREML(fit) == m$reml)

    theta <- getME(fit, "theta")
    lower <- getME(fit, "lower")
    diagonal <- lower == 0
    objective <- if (m$reml) REMLcrit(fit) else deviance(fit)
    ml_deviance <- if (m$reml) deviance(fit, REML = FALSE) else deviance(fit)

    fe <- fixef(fit)
    V <- as.matrix(vcov(fit))
    dimnames(V) <- NULL
    ll <- logLik(fit)

    rec <- list(
        dataset = m$dataset,
        formula = m$formula,
        reml = m$reml,
        weights = m$weights_rule,
        offset = m$offset_rule,
        theta = I(unname(theta)),
        theta_names = I(names(theta)),
        theta_diagonal = I(unname(diagonal)),
        objective = objective,
        objective_checks = NULL,  # filled in below
        fixef = list(names = I(names(fe)), values = I(unname(fe))),
        fixef_se = I(unname(sqrt(diag(V)))),
        vcov = V,
        sigma = sigma(fit),
        loglik = as.numeric(ll),
        loglik_df = as.integer(attr(ll, "df")),
        aic = AIC(fit),
        bic = BIC(fit),
        deviance = ml_deviance,
        nobs = as.integer(nobs(fit)),
        ngroups = as.list(vapply(ngrps(fit), as.integer, integer(1))),
        varcorr = varcorr_records(fit),
        ranef = if (m$ranef) ranef_record(fit) else NULL,
        fitted_head = I(unname(head(fitted(fit), 10))),
        resid_head = I(unname(head(residuals(fit), 10))),
        optimizer = fit@optinfo$optimizer,
        feval = as.integer(fit@optinfo$feval),
        convergence_messages = I(as.character(unlist(fit@optinfo$conv$lme4$messages))),
        singular = isSingular(fit)
    )
    ## Profiled objective as a function of theta.  This must run only after
    ## everything above has been extracted: getME(fit, "devfun") for an LMM
    ## is built on the fit's own reference-class 'pp' and 'resp' objects, so
    ## evaluating it at another theta silently changes what ranef(), fitted(),
    ## residuals() and vcov() later return for 'fit'.  The recorded values come
    ## from a fresh deviance function, lmer(..., devFunOnly = TRUE), and are
    ## cross-checked against getME(fit, "devfun"), which is evaluated last.
    dcl <- cl
    dcl$devFunOnly <- TRUE
    devfun <- eval(dcl, globalenv())
    at_opt <- devfun(unname(theta))
    if (rel_diff(at_opt, objective) > 1e-10)
        stop(key, ": deviance function at theta-hat (", at_opt,
             ") differs from the fitted objective (", objective, ")")
    check_thetas <- list(
        ifelse(diagonal, 1, 0),                    # lme4's starting value
        unname(theta) * 0.5,
        ifelse(diagonal, unname(theta) * 1.5 + 0.1, unname(theta) * 1.5)
    )
    check_values <- vapply(check_thetas, devfun, numeric(1))
    devfun_getme <- getME(fit, "devfun")
    for (i in seq_along(check_thetas)) {
        if (rel_diff(devfun_getme(check_thetas[[i]]), check_values[i]) > 1e-12)
            stop(key, ": getME(fit, 'devfun') and devFunOnly disagree")
    }
    rec$objective_checks <- lapply(seq_along(check_thetas), function(i)
        list(theta = I(check_thetas[[i]]), objective = check_values[i]))

    ## Keep explicit nulls (assigning NULL to a list element would drop it).
    rec["weights"] <- list(m$weights_rule)
    rec["offset"] <- list(m$offset_rule)
    if (!m$ranef) rec["ranef"] <- list(NULL)
    rec
}

records <- list()
for (key in names(models)) {
    records[[key]] <- fit_record(key, models[[key]])
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    r_version_string = R.version.string,
    lme4_version = as.character(packageDescription("lme4")$Version),
    matrix_version = as.character(packageDescription("Matrix")$Version),
    platform = R.version$platform,
    generated = format(Sys.Date(), "%Y-%m-%d"),
    control = "lmerControl() defaults",
    models = records
)

writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
