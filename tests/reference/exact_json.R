## Helpers shared by the reference-generation scripts in tests/reference/.
##
## jsonlite::toJSON() prints at most 15 significant digits (even with
## digits = NA or digits = I(17)), which does not round-trip IEEE doubles.
## The functions below therefore format every double themselves, using the
## shortest of 15, 16 or 17 significant digits that parses back to the very
## same double (17 significant digits always identify a double uniquely), and
## serialise R objects to JSON with those strings.
##
## The shortest-representation choice relies on R's own string-to-double
## conversion; it can be cross-checked independently of R by setting the
## environment variable EXACT_JSON_HEX_LOG to a file path: every double that
## is written is then also logged as "<decimal>\t<C99 hex float>" so that
## another language can confirm decimal and hex parse to the same double
## (see tests/reference/README.md).

.exact_hex_log <- new.env()
.exact_hex_log$decimal <- character(0)
.exact_hex_log$hex <- character(0)

## Format a double vector so that each element round-trips exactly.
## NA/NaN become NA_character_ (the caller decides how to write them);
## infinities are rejected because JSON has no representation for them.
format_exact <- function(x) {
    x <- as.double(x)
    out <- rep(NA_character_, length(x))
    for (i in seq_along(x)) {
        v <- x[i]
        if (is.na(v)) next
        if (is.infinite(v)) stop("cannot write an infinite value exactly: ", v)
        if (v == 0) {
            out[i] <- if (1 / v < 0) "-0" else "0"
            next
        }
        s <- NA_character_
        for (digits in 15:17) {
            candidate <- sprintf("%.*g", digits, v)
            if (as.double(candidate) == v) {
                s <- candidate
                break
            }
        }
        if (is.na(s)) s <- sprintf("%.17g", v)
        out[i] <- s
    }
    log_file <- Sys.getenv("EXACT_JSON_HEX_LOG", "")
    if (nzchar(log_file)) {
        keep <- !is.na(x)
        .exact_hex_log$decimal <- c(.exact_hex_log$decimal, out[keep])
        .exact_hex_log$hex <- c(.exact_hex_log$hex, sprintf("%a", x[keep]))
    }
    out
}

## Write the logged (decimal, hex) pairs when EXACT_JSON_HEX_LOG is set.
flush_hex_log <- function() {
    log_file <- Sys.getenv("EXACT_JSON_HEX_LOG", "")
    if (!nzchar(log_file)) return(invisible(NULL))
    writeLines(paste(.exact_hex_log$decimal, .exact_hex_log$hex, sep = "\t"),
               log_file)
    invisible(log_file)
}

json_string <- function(s) {
    if (length(s) == 0L) return(character(0))
    s <- gsub("\\\\", "\\\\\\\\", s)
    s <- gsub("\"", "\\\\\"", s)
    s <- gsub("\n", "\\\\n", s)
    s <- gsub("\t", "\\\\t", s)
    s <- gsub("\r", "\\\\r", s)
    paste0("\"", s, "\"")
}

## Scalars of an atomic vector as JSON tokens (NA -> null).
json_atoms <- function(x) {
    if (is.factor(x)) x <- as.character(x)
    tokens <- if (is.logical(x)) {
        ifelse(x, "true", "false")
    } else if (is.integer(x)) {
        as.character(x)
    } else if (is.double(x)) {
        format_exact(x)
    } else if (is.character(x)) {
        json_string(x)
    } else {
        stop("unsupported atomic type: ", typeof(x))
    }
    tokens[is.na(x)] <- "null"
    tokens
}

## Serialise an R object to JSON text.
##  * NULL -> null
##  * atomic of length 1 -> scalar, unless wrapped in I() (then an array)
##  * other atomic vectors -> arrays
##  * matrices -> arrays of rows
##  * named lists -> objects (in order), unnamed lists -> arrays
## 'indent' is the current indentation depth (pretty printing, 2 spaces).
to_json <- function(x, indent = 0L) {
    pad <- function(n) strrep("  ", n)
    if (is.null(x)) return("null")
    if (is.matrix(x) && is.atomic(x)) {
        rows <- lapply(seq_len(nrow(x)), function(i) I(unname(x[i, ])))
        return(to_json(rows, indent))
    }
    if (is.atomic(x)) {
        force_array <- inherits(x, "AsIs")
        x <- unclass(x)
        attributes(x) <- NULL
        tokens <- json_atoms(x)
        if (length(tokens) == 1L && !force_array) return(tokens)
        return(paste0("[", paste(tokens, collapse = ", "), "]"))
    }
    if (is.list(x)) {
        if (length(x) == 0L) return(if (is.null(names(x))) "[]" else "{}")
        inner <- vapply(x, to_json, character(1), indent = indent + 1L)
        if (is.null(names(x))) {
            all_scalar <- !any(grepl("[\n{]", inner))
            if (all_scalar) return(paste0("[", paste(inner, collapse = ", "), "]"))
            return(paste0("[\n", paste0(pad(indent + 1L), inner, collapse = ",\n"),
                          "\n", pad(indent), "]"))
        }
        keys <- json_string(names(x))
        return(paste0("{\n",
                      paste0(pad(indent + 1L), keys, ": ", inner, collapse = ",\n"),
                      "\n", pad(indent), "}"))
    }
    stop("cannot serialise object of class ", paste(class(x), collapse = "/"))
}
