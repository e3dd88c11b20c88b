## Estimated marginal means and their contrasts: R's emmeans for lmer (Kenward-Roger df),
## glmer (response scale), nlme's gls (mode = "df.error") and geepack's geeglm.
##
## Run from the repository root (after export_inference_datasets.R):
##     Rscript tests/reference/emmeans_reference.R
## It writes tests/reference/emmeans.json: per case the model, lme4's theta where there is
## one (tests evaluate ours there), and per emmeans call its table (columns as emmeans
## names them) and those of pairs() / contrast() where asked.

suppressPackageStartupMessages({
    library(lme4)
    library(emmeans)
    library(nlme)
    library(geepack)
})
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
data_dir <- file.path("python", "multilevel", "datasets", "data")
emm_options(lmer.df = "kenward-roger")

ham <- read_dataset("ham", data_dir)
names(ham)[names(ham) == "Informed.liking"] <- "liking"
cbpp <- read_dataset("cbpp", data_dir)
Orthodont <- read_dataset("Orthodont", data_dir)
Orthodont$Sex <- factor(Orthodont$Sex, ordered = FALSE)
epil <- read_dataset("epil", data_dir)

table_of <- function(x) {
    d <- as.data.frame(summary(x))
    out <- list()
    for (col in names(d)) {
        x <- d[[col]]
        ## Infinite df (asymptotic tests) are written as null; JSON has no infinity.
        out[[col]] <- if (is.numeric(x)) ifelse(is.infinite(x), NA, as.numeric(x)) else as.character(x)
    }
    out
}

fit_ham <- lmer(liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product), ham)
fit_age <- lmer(liking ~ Product + Age + Information + (1 | Consumer), ham)
fit_cbpp <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp)
fit_gls <- gls(distance ~ age * Sex, Orthodont, correlation = corAR1(form = ~ 1 | Subject))
fit_gee <- geeglm(y ~ trt + lbase, family = poisson, data = epil, id = subject, corstr = "exchangeable")

e_ham <- emmeans(fit_ham, ~ Product)
e_cbpp <- emmeans(fit_cbpp, ~ period, type = "response")
records <- list(
    ham_product = list(model = "ham", specs = "Product", table = table_of(e_ham),
                       pairs = table_of(pairs(e_ham)),
                       trt_vs_ctrl = table_of(contrast(e_ham, "trt.vs.ctrl", adjust = "bonferroni")),
                       eff = table_of(contrast(e_ham, "eff"))),
    ham_by = list(model = "ham", specs = "Product", by = "Information",
                  table = table_of(emmeans(fit_ham, ~ Product | Information)),
                  pairs = table_of(pairs(emmeans(fit_ham, ~ Product | Information), adjust = "holm"))),
    age_mean = list(model = "age", specs = "Product", table = table_of(emmeans(fit_age, ~ Product))),
    age_at_40 = list(model = "age", specs = "Product", at = list(Age = 40),
                     table = table_of(emmeans(fit_age, ~ Product, at = list(Age = 40)))),
    cbpp_response = list(model = "cbpp", specs = "period", type = "response", table = table_of(e_cbpp),
                         pairs = table_of(pairs(e_cbpp))),
    gls_sex = list(model = "gls", specs = "Sex", table = table_of(emmeans(fit_gls, ~ Sex, mode = "df.error"))),
    gee_trt = list(model = "gee", specs = "trt", type = "response",
                   table = table_of(emmeans(fit_gee, ~ trt, type = "response")))
)

result <- list(
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    emmeans_version = as.character(packageVersion("emmeans")),
    generated = format(Sys.Date(), "%Y-%m-%d"),
    theta = list(ham = unname(getME(fit_ham, "theta")), age = unname(getME(fit_age, "theta"))),
    cases = records
)
writeLines(to_json(result), file.path("tests", "reference", "emmeans.json"))
flush_hex_log()
