## Verification bookkeeping shared by glmm_obslevel_reference.R and
## condvar_reference.R: every re-derivation is recorded with its discrepancy
## and tolerance, and the script stops on the first one beyond its tolerance.
## (glmm_reference.R and glmm_links_reference.R define the same functions
## inline.)

verification <- list()

## Norm-wise relative difference: max |a - b| / max |b|.
rel_diff <- function(a, b) {
    a <- as.numeric(a); b <- as.numeric(b)
    max(abs(a - b)) / max(abs(b), 1e-300)
}

abs_diff <- function(a, b) max(abs(as.numeric(a) - as.numeric(b)))

check <- function(key, what, value, tol, kind = "relative") {
    verification[[length(verification) + 1L]] <<-
        list(model = key, check = what, kind = kind, max_discrepancy = value, tolerance = tol)
    if (!is.finite(value) || value > tol)
        stop(key, ": check failed: ", what, " (", kind, " discrepancy ",
             format(value, digits = 3), " > ", tol, ")")
    invisible(value)
}

## Per grouping factor, each level's covariance matrix of its random effects
## from the full matrix C of b (lme4's order: term, then level, then column):
## a list of nlevels matrices p x p, p the number of columns of all the
## factor's terms (in lme4's term order).  Cross-term entries are kept.
level_blocks <- function(fit, C) {
    C <- as.matrix(C)
    cnms <- fit@cnms
    Gp <- fit@Gp
    out <- list()
    for (g in unique(names(cnms))) {
        terms <- which(names(cnms) == g)
        nlev <- nlevels(fit@flist[[g]])
        out[[g]] <- lapply(seq_len(nlev), function(j) {
            idx <- unlist(lapply(terms, function(t) {
                nc <- length(cnms[[t]])
                Gp[t] + (j - 1L) * nc + seq_len(nc)
            }))
            unname(C[idx, idx, drop = FALSE])
        })
    }
    out
}

## lme4's postVar per grouping factor in the layout of level_blocks(): for a
## factor with several terms, lme4 returns one array per term; they are
## placed on the block diagonal (the cross-term entries are left NA).
postvar_blocks <- function(fit) {
    re <- ranef(fit, condVar = TRUE)
    out <- list()
    for (g in names(re)) {
        pv <- attr(re[[g]], "postVar")
        arrays <- if (is.list(pv)) pv else list(pv)
        sizes <- vapply(arrays, function(a) dim(a)[1], 1L)
        p <- sum(sizes)
        out[[g]] <- lapply(seq_len(nrow(re[[g]])), function(j) {
            m <- matrix(NA_real_, p, p)
            at <- 0L
            for (a in seq_along(arrays)) {
                k <- sizes[a]
                m[at + seq_len(k), at + seq_len(k)] <- arrays[[a]][, , j]
                at <- at + k
            }
            m
        })
    }
    out
}
