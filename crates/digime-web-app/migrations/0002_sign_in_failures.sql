-- Failed sign-ins per name (ASCII lower case, known or not), to slow down password
-- guessing: after a few within a window, the name is refused until the window ends.
-- Rows older than the window are swept.
CREATE TABLE sign_in_failures (
    name     TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    since    INTEGER NOT NULL
);
