## The nlme lme() cases shared by lme_residual_reference.R and lme_inference_reference.R: the bundled
## data sets (ordered factors made plain), BodyWeight with gaps in integer time, our arguments beside
## nlme's call, and fit_lme_case() with the tight controls both use. Sourced from the repository root.

suppressPackageStartupMessages(library(nlme))
source(file.path("tests", "reference", "exact_json.R"))
source(file.path("tests", "reference", "dataset_writer.R"))
data_dir <- file.path("python", "multilevel", "datasets", "data")

Ovary <- read_dataset("Ovary", data_dir)
Orthodont <- read_dataset("Orthodont", data_dir)
BodyWeight <- read_dataset("BodyWeight", data_dir)
for (nm in c("Ovary", "Orthodont", "BodyWeight")) {
    d <- get(nm)
    d[] <- lapply(d, function(x) if (is.ordered(x)) factor(x, ordered = FALSE) else x)
    assign(nm, d)
}
## Integer visits with gaps: BodyWeight's days 1, 8, ..., 64 as weeks (day 44 dropped), rows 3 and 6 of
## every rat dropped.
bw_gaps <- BodyWeight[BodyWeight$Time != 44, ]
bw_gaps$week <- as.integer((bw_gaps$Time - 1) / 7)
bw_gaps <- bw_gaps[!(ave(seq_len(nrow(bw_gaps)), bw_gaps$Rat, FUN = seq_along) %in% c(3, 6)), ]

cases <- list(
    ovary_ar1_reml = list(data = "Ovary", reml = TRUE, group = "Mare",
        fixed = follicles ~ sin(2 * pi * Time) + cos(2 * pi * Time), random = ~ 1 | Mare,
        correlation = quote(corAR1(form = ~ 1 | Mare)), weights = NULL,
        ours = list(formula = "follicles ~ np.sin(2 * np.pi * Time) + np.cos(2 * np.pi * Time) + (1 | Mare)",
                    corr = "ar1")),
    ovary_ar1_ml = list(data = "Ovary", reml = FALSE, group = "Mare",
        fixed = follicles ~ sin(2 * pi * Time) + cos(2 * pi * Time), random = ~ 1 | Mare,
        correlation = quote(corAR1(form = ~ 1 | Mare)), weights = NULL,
        ours = list(formula = "follicles ~ np.sin(2 * np.pi * Time) + np.cos(2 * np.pi * Time) + (1 | Mare)",
                    corr = "ar1")),
    orthodont_ident = list(data = "Orthodont", reml = TRUE, group = "Subject",
        fixed = distance ~ age * Sex, random = ~ 1 | Subject, correlation = NULL,
        weights = quote(varIdent(form = ~ 1 | Sex)),
        ours = list(formula = "distance ~ age * Sex + (1 | Subject)", variance = list(kind = "ident", column = "Sex"))),
    bodyweight_power = list(data = "BodyWeight", reml = TRUE, group = "Rat",
        fixed = weight ~ Time * Diet, random = ~ Time | Rat, correlation = NULL,
        weights = quote(varPower(form = ~ Time)),
        ours = list(formula = "weight ~ Time * Diet + (Time | Rat)", variance = list(kind = "power", column = "Time"))),
    bodyweight_car1_power = list(data = "BodyWeight", reml = FALSE, group = "Rat",
        fixed = weight ~ Time * Diet, random = ~ Time | Rat,
        correlation = quote(corCAR1(form = ~ Time | Rat)), weights = quote(varPower(form = ~ Time)),
        ours = list(formula = "weight ~ Time * Diet + (Time | Rat)", corr = "car1", time = "Time",
                    variance = list(kind = "power", column = "Time"))),
    bodyweight_power_fitted = list(data = "BodyWeight", reml = TRUE, group = "Rat", points = FALSE,
        fixed = weight ~ Time * Diet, random = ~ Time | Rat, correlation = NULL,
        weights = quote(varPower()),
        ours = list(formula = "weight ~ Time * Diet + (Time | Rat)", variance = list(kind = "power", column = NULL))),
    bodyweight_ar1_gaps = list(data = "bw_gaps", reml = TRUE, group = "Rat",
        fixed = weight ~ Time * Diet, random = ~ 1 | Rat,
        correlation = quote(corAR1(form = ~ week | Rat)), weights = NULL,
        ours = list(formula = "weight ~ Time * Diet + (1 | Rat)", corr = "ar1", time = "week"))
)

## nlme's fit of one case, with its data set attached as fit$data.
fit_lme_case <- function(case) {
    data <- get(case$data)
    args <- list(fixed = case$fixed, random = case$random, data = data, method = if (case$reml) "REML" else "ML",
                 control = lmeControl(maxIter = 200, msMaxIter = 200, niterEM = 100, tolerance = 1e-10,
                                      msTol = 1e-12))
    if (!is.null(case$correlation)) args$correlation <- eval(case$correlation)
    if (!is.null(case$weights)) args$weights <- eval(case$weights)
    fit <- do.call(lme, args)
    fit$data <- data
    fit
}
