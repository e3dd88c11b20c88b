## Bundled datasets: writing a CSV (exact doubles, factors by label) plus a
## JSON column schema with a round-trip check (the export_*.R scripts), and
## reading one back as R columns (the *_reference.R scripts).
## Needs format_exact() and to_json() from exact_json.R, and jsonlite.

column_type <- function(x) {
    if (is.ordered(x)) return("ordered")
    if (is.factor(x)) return("factor")
    if (is.integer(x)) return("integer")
    if (is.double(x)) return("numeric")
    stop("unsupported column type: ", paste(class(x), collapse = "/"))
}

csv_field <- function(x) {
    ## Quote a character field only when CSV requires it.
    needs_quote <- grepl("[\",\n\r]", x) | x == "NA" | x == ""
    ifelse(needs_quote, paste0("\"", gsub("\"", "\"\"", x), "\""), x)
}

column_text <- function(x) {
    out <- switch(column_type(x),
        factor = , ordered = csv_field(as.character(x)),
        integer = as.character(x),
        numeric = format_exact(x))
    out[is.na(x)] <- "NA"
    out
}

## Write d as <out_dir>/<name>.csv (or .csv.gz) and <name>.json; returns the CSV path.
write_dataset <- function(name, d, out_dir, compressed = FALSE) {
    d <- as.data.frame(d)
    rownames(d) <- NULL
    schema <- lapply(names(d), function(col) {
        x <- d[[col]]
        entry <- list(name = col, type = column_type(x))
        if (is.factor(x)) entry$levels <- I(levels(x))
        entry
    })
    cols <- lapply(d, column_text)
    lines <- c(paste(csv_field(names(d)), collapse = ","),
               do.call(paste, c(unname(cols), sep = ",")))
    if (compressed) {
        path <- file.path(out_dir, paste0(name, ".csv.gz"))
        con <- gzfile(path, open = "wb", compression = 9)
    } else {
        path <- file.path(out_dir, paste0(name, ".csv"))
        con <- file(path, open = "wb")
    }
    writeLines(lines, con, sep = "\n")
    close(con)

    ## Round-trip check: read the file back with R and compare to the original.
    back <- utils::read.csv(path, colClasses = "character", na.strings = "NA",
                            check.names = FALSE)
    stopifnot(identical(names(back), names(d)), nrow(back) == nrow(d))
    for (col in names(d)) {
        x <- d[[col]]
        y <- back[[col]]
        ok <- if (is.factor(x)) {
            identical(as.character(x), y)
        } else if (is.integer(x)) {
            identical(x, as.integer(y))
        } else {
            identical(x, as.double(y))
        }
        if (!ok) stop("round trip failed for ", name, "$", col)
    }
    writeLines(to_json(schema), file.path(out_dir, paste0(name, ".json")))
    path
}

## Read <data_dir>/<name>.csv with its schema back into R columns of the recorded types.
read_dataset <- function(name, data_dir) {
    schema <- jsonlite::fromJSON(file.path(data_dir, paste0(name, ".json")),
                                 simplifyVector = FALSE)
    raw <- utils::read.csv(file.path(data_dir, paste0(name, ".csv")),
                           colClasses = "character", na.strings = "NA",
                           check.names = FALSE)
    cols <- lapply(schema, function(s) {
        x <- raw[[s$name]]
        switch(s$type,
               factor = factor(x, levels = unlist(s$levels)),
               ordered = factor(x, levels = unlist(s$levels), ordered = TRUE),
               integer = as.integer(x),
               numeric = as.double(x))
    })
    names(cols) <- vapply(schema, function(s) s$name, "")
    data.frame(cols, check.names = FALSE)
}

## Whether two data frames hold the same columns, values and factor levels.
same_values <- function(a, b) {
    a <- as.data.frame(a); b <- as.data.frame(b)
    identical(names(a), names(b)) && nrow(a) == nrow(b) &&
        all(vapply(names(a), function(n) {
            x <- a[[n]]; y <- b[[n]]
            if (is.factor(x)) identical(as.character(x), as.character(y)) &&
                                  identical(levels(x), levels(y)) &&
                                  identical(is.ordered(x), is.ordered(y))
            else identical(as.double(x), as.double(y))
        }, TRUE))
}
