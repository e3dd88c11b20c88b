## Binomial cbind(successes, failures) responses with lme4::glmer and geepack::geeglm.
##
## Run from the repository root:
##     Rscript tests/reference/cbind_reference.R
## It writes tests/reference/cbind.json (for tests/test_cbind.py): per fit the
## formula, coefficients, standard errors and, for glmer, theta, logLik and
## the Laplace objective (devcomp's "dev" = -2 logLik, summary()'s deviance); for geeglm alpha (exchangeable) and the scale phi. The "weighted"
## fits also pass weights = w (1, 2, 3, 1, 2, 3, ...), which glm and glmer
## multiply into the trials. geeglm does not: with a cbind response it replaces
## weights= by the trials (geepack 1.3.9, geeglm's body), so its weighted fit is
## the unweighted one (checked below); multilevel multiplies, as glm does, and
## `glm_weighted` (glm's estimates = the independence GEE's) checks that.
## With weights, glmer's logLik is sum_i w_i log dbinom(k_i, m_i, mu_i) (binomial()$aic
## with m = trials): the weights replicate rows, a constant away from the
## weights = w m form's binomial on w m trials (the same estimates).
## Zero-trial rows: glmer keeps them with prior weight 0 (same estimates and
## logLik, counted in nobs); checked below and recorded. geeglm fails on them.

suppressPackageStartupMessages({
    library(lme4)
    library(geepack)
})
source(file.path("tests", "reference", "exact_json.R"))

out_path <- file.path("tests", "reference", "cbind.json")
cbpp <- lme4::cbpp
cbpp$w <- rep(c(1, 2, 3), length.out = nrow(cbpp))

glmer_record <- function(fit, formula) {
    list(formula = formula, fixef = I(unname(fixef(fit))), names = I(names(fixef(fit))),
         fixef_se = I(unname(sqrt(diag(as.matrix(vcov(fit)))))), theta = I(unname(getME(fit, "theta"))),
         loglik = as.numeric(logLik(fit)), objective = unname(fit@devcomp$cmp[["dev"]]), nobs = nobs(fit),
         weights = I(unname(weights(fit))))
}
gee_record <- function(fit, formula) {
    s <- summary(fit)
    list(formula = formula, coefficients = I(unname(coef(fit))), names = I(names(coef(fit))),
         se_robust = I(unname(s$coefficients[, "Std.err"])), alpha = as.numeric(s$corr$Estimate),
         phi = as.numeric(s$dispersion$Estimate), nobs = length(fit$y), weights = I(unname(fit$prior.weights)))
}

f_glmer <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
f_gee <- "cbind(incidence, size - incidence) ~ period"
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-4, rhoend = 2e-11, maxfun = 1e5))
m <- glmer(as.formula(f_glmer), family = binomial, data = cbpp, control = ctrl)
m_w <- glmer(as.formula(f_glmer), family = binomial, data = cbpp, weights = w, control = ctrl)
## the weights= form (proportion and trials) must be the same fit
m_p <- glmer(incidence / size ~ period + (1 | herd), family = binomial, data = cbpp, weights = size, control = ctrl)
stopifnot(abs(logLik(m) - logLik(m_p)) < 1e-10, max(abs(fixef(m) - fixef(m_p))) < 1e-8)

## zero-trial rows: kept with weight 0, no effect on the fit
z <- cbpp
z$incidence[c(3, 10)] <- 0
z$size[c(3, 10)] <- 0
m_z <- glmer(as.formula(f_glmer), family = binomial, data = z, control = ctrl)
m_zd <- glmer(as.formula(f_glmer), family = binomial, data = z[-c(3, 10), ], control = ctrl)
stopifnot(abs(logLik(m_z) - logLik(m_zd)) < 1e-8, max(abs(fixef(m_z) - fixef(m_zd))) < 1e-6,
          nobs(m_z) == 56, nobs(m_zd) == 54)

g <- geeglm(as.formula(f_gee), id = herd, family = binomial, data = cbpp, corstr = "exchangeable",
            control = geese.control(epsilon = 1e-12, maxit = 100))
g_w <- geeglm(as.formula(f_gee), id = herd, family = binomial, data = cbpp, corstr = "exchangeable",
              weights = w, control = geese.control(epsilon = 1e-12, maxit = 100))
stopifnot(max(abs(coef(g_w) - coef(g))) < 1e-10)  # geeglm ignores weights= with cbind
gl_w <- glm(as.formula(f_gee), family = binomial, data = cbpp, weights = w,
            control = glm.control(epsilon = 1e-14, maxit = 100))
g_z <- try(geeglm(as.formula(f_gee), id = herd, family = binomial, data = z, corstr = "exchangeable"),
           silent = TRUE)

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    lme4_version = as.character(packageDescription("lme4")$Version),
    geepack_version = as.character(packageDescription("geepack")$Version),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    weights_column = "w = rep(c(1, 2, 3), length.out = nrow(cbpp))",
    glmer = glmer_record(m, f_glmer),
    glmer_weighted = glmer_record(m_w, f_glmer),
    glmer_zero_trials = list(rows = I(c(3L, 10L)), loglik = as.numeric(logLik(m_z)), nobs = nobs(m_z),
                             loglik_rows_dropped = as.numeric(logLik(m_zd)), nobs_rows_dropped = nobs(m_zd)),
    geeglm = gee_record(g, f_gee),
    geeglm_weighted = gee_record(g_w, f_gee),
    glm_weighted = list(formula = f_gee, coefficients = I(unname(coef(gl_w))), names = I(names(coef(gl_w))),
                        se = I(unname(sqrt(diag(vcov(gl_w))))), weights = I(unname(weights(gl_w)))),
    geeglm_zero_trials_error = if (inherits(g_z, "try-error")) trimws(as.character(g_z)) else NULL
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
