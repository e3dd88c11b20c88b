## broom.mixed / broom output for lmer, glmer, gls and geeglm fits.
##
## Run from the repository root:
##     Rscript tests/reference/tidy_reference.R
## It writes tests/reference/tidy.json (~20 s), which tests/test_tidy.py compares
## multilevel.tidy() and multilevel.glance() with: the column names exactly,
## the values at full precision (doubles round-trip, see exact_json.R).
##
## Needs broom.mixed (tidy/glance for merMod and gls), broom (geeglm), lme4,
## nlme, geepack and jsonlite:
##     apt-get install -y r-cran-broom.mixed r-cran-lme4 r-cran-nlme r-cran-geepack r-cran-jsonlite
##
## Per model the file holds
##   tidy_fixed    tidy(fit, effects = "fixed") (merMod) or tidy(fit) (gls, geeglm)
##   tidy_all      tidy(fit, effects = c("ran_pars", "fixed"), conf.int = TRUE, conf.level = 0.9)
##                 (merMod) or tidy(fit, conf.int = TRUE, conf.level = 0.9) (gls, geeglm)
##   ran_vals      tidy(fit, effects = "ran_vals") (merMod only)
##   glance        glance(fit)
## each as {"columns": [...], "data": {column: [values]}} (NA as null).
## The data are the bundled CSV files (python/multilevel/datasets/data/).
## Every fit is converged far tighter than the packages' defaults (whose
## optima agree with multilevel's only to 1e-4 .. 1e-6): lmer and glmer with
## nloptwrap at xtol_abs = 1e-14, ftol_abs = 1e-15; gls with msTol and
## tolerance 1e-12; geeglm with epsilon = 1e-12. The tests fit tightly too, so
## both sides sit at the same optimum and the comparison checks the tables.

suppressPackageStartupMessages({
    library(lme4)
    library(nlme)
    library(geepack)
    library(broom)
    library(broom.mixed)
    library(jsonlite)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))

out_path <- file.path("tests", "reference", "tidy.json")
data_dir <- file.path("python", "multilevel", "datasets", "data")
for (name in c("sleepstudy", "Pastes", "Penicillin", "cbpp", "Contraception",
               "Orthodont", "Ovary", "ohio", "epil"))
    assign(name, read_dataset(name, data_dir), envir = globalenv())

## A tibble as columns of plain vectors (I(): always a JSON array).
frame_json <- function(d) {
    d <- as.data.frame(d, stringsAsFactors = FALSE)
    cols <- lapply(d, function(x) {
        if (is.factor(x)) x <- as.character(x)
        if (is.logical(x) && all(is.na(x))) x <- as.double(x)  # all-NA columns (NA) as numbers
        I(unname(x))
    })
    list(columns = I(names(d)), data = cols)
}

lmer_models <- list(
    sleepstudy_reml = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE),
    sleepstudy_ml = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", REML = FALSE),
    sleepstudy_uncorr_reml = list(dataset = "sleepstudy", formula = "Reaction ~ Days + (Days || Subject)",
                                  REML = TRUE),
    pastes_reml = list(dataset = "Pastes", formula = "strength ~ 1 + (1 | batch/cask)", REML = TRUE),
    penicillin_ml = list(dataset = "Penicillin", formula = "diameter ~ 1 + (1 | plate) + (1 | sample)",
                         REML = FALSE)
)
glmer_models <- list(
    cbpp_laplace = list(dataset = "cbpp", family = "binomial",
                        formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
    contraception_slope = list(dataset = "Contraception", family = "binomial",
                               formula = "use ~ age + I(age^2) + urban + livch + (urban | district)")
)
gls_models <- list(
    orthodont_cs_reml = list(dataset = "Orthodont", formula = "distance ~ age", method = "REML",
                             correlation = "corCompSymm(form = ~ 1 | Subject)"),
    ovary_ar1_ml = list(dataset = "Ovary", formula = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time)",
                        method = "ML", correlation = "corAR1(form = ~ 1 | Mare)")
)
gee_models <- list(
    ohio_exch = list(dataset = "ohio", formula = "resp ~ age + smoke", family = "binomial",
                     id = "id", corstr = "exchangeable"),
    epil_ar1 = list(dataset = "epil", formula = "y ~ lbase + trt + lage + V4", family = "poisson",
                    id = "subject", corstr = "ar1")
)

mixed_record <- function(m, fit) {
    c(m, list(
        tidy_fixed = frame_json(tidy(fit, effects = "fixed")),
        tidy_all = frame_json(tidy(fit, effects = c("ran_pars", "fixed"), conf.int = TRUE, conf.level = 0.9)),
        ran_vals = frame_json(tidy(fit, effects = "ran_vals")),
        glance = frame_json(glance(fit))
    ))
}
marginal_record <- function(m, fit) {
    c(m, list(
        tidy_fixed = frame_json(tidy(fit)),
        tidy_all = frame_json(tidy(fit, conf.int = TRUE, conf.level = 0.9)),
        glance = frame_json(glance(fit))
    ))
}

tight_opt <- list(xtol_abs = 1e-14, ftol_abs = 1e-15, xtol_rel = 1e-14, ftol_rel = 1e-16, maxeval = 1e5)
records <- list()
for (key in names(lmer_models)) {
    m <- lmer_models[[key]]
    fit <- lmer(as.formula(m$formula), data = get(m$dataset), REML = m$REML,
                control = lmerControl(optimizer = "nloptwrap", optCtrl = tight_opt))
    records[[key]] <- c(list(kind = "lmer"), mixed_record(m, fit))
}
for (key in names(glmer_models)) {
    m <- glmer_models[[key]]
    fit <- glmer(as.formula(m$formula), data = get(m$dataset), family = m$family,
                 control = glmerControl(optimizer = "nloptwrap", optCtrl = tight_opt))
    records[[key]] <- c(list(kind = "glmer"), mixed_record(m, fit))
}
for (key in names(gls_models)) {
    m <- gls_models[[key]]
    fit <- eval(bquote(gls(.(as.formula(m$formula)), data = .(as.name(m$dataset)), method = .(m$method),
                           correlation = .(str2lang(m$correlation)),
                           control = glsControl(msTol = 1e-12, tolerance = 1e-12, msMaxIter = 1000))))
    records[[key]] <- c(list(kind = "gls"), marginal_record(m, fit))
}
for (key in names(gee_models)) {
    m <- gee_models[[key]]
    d <- get(m$dataset)
    d$.id <- d[[m$id]]
    fit <- geeglm(as.formula(m$formula), data = d, id = .id, family = m$family, corstr = m$corstr,
                  control = geese.control(epsilon = 1e-12, maxit = 200))
    records[[key]] <- c(list(kind = "geeglm"), marginal_record(m, fit))
}

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    broom_mixed_version = as.character(packageVersion("broom.mixed")),
    broom_version = as.character(packageVersion("broom")),
    lme4_version = as.character(packageVersion("lme4")),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    models = records
)
writeLines(to_json(result), out_path)
flush_hex_log()
cat("wrote", out_path, "\n")
