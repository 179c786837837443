# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mailferry_global_optspecs
    string join \n c/config= q/quiet v/verbose json j/jobs= wait-lock= log-file= state-dir= h/help V/version
end

function __fish_mailferry_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mailferry_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mailferry_using_subcommand
    set -l cmd (__fish_mailferry_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mailferry -n "__fish_mailferry_needs_command" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_needs_command" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_needs_command" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_needs_command" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_needs_command" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_needs_command" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_needs_command" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_needs_command" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailferry -n "__fish_mailferry_needs_command" -s V -l version -d 'Print version'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "fetch" -d 'Fetch mail one way, from POP3 or IMAP into a Maildir'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "sync" -d 'Two-way sync of IMAP folders with a Maildir (channels of the config)'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "migrate" -d 'Copy a POP3, IMAP or Maildir store into an IMAP server'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "check" -d 'Connect, negotiate TLS and log in; no mail moves'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "list" -d 'List the folders of an account with message counts'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "status" -d 'Show what the state database knows about accounts'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "keyring" -d 'Store or delete an account\'s password in the OS keyring (password_keyring)'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c mailferry -n "__fish_mailferry_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l delete-after -d 'Keep mail on the server, deleting it this long after it was first fetched (e.g. 30d)' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l max-messages -d 'Fetch at most this many messages in this run' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l max-size -d 'Skip (and leave on the server) messages larger than this (e.g. 20M)' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l maildir -d 'Maildir to deliver into (needed when an account is given as a URL)' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l password-env -d 'Take the password from this environment variable' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l password-command -d 'Take the password from the first line this shell command prints' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l tls -d 'TLS mode [default: implicit for pop3s/imaps, starttls for pop3/imap]' -r -f -a "implicit\t'TLS from the first byte (pop3s, imaps)'
starttls\t'Plain connection upgraded with STLS / STARTTLS'
none\t'No TLS at all (needs --allow-plaintext)'"
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l tls-fingerprint -d 'Accept the server\'s certificate by its SHA-256 fingerprint ("sha256:HEX")' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l layout -d 'Maildir folder layout' -r -f -a "maildir++\t'Maildir++: sub-folders as .Sub.Folder (Dovecot\'s default)'
fs\t'Nested directories: Sub/Folder'"
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l keep -d 'Leave mail on the server (the default)'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l delete -d 'Delete each message on the server once it is safely on disk'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -s n -l dry-run -d 'Show what would be fetched or deleted; change nothing anywhere'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l allow-plaintext -d 'Allow a password over a connection without TLS (needs --tls none)'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand fetch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -l allow-empty -d 'Take the emptied side of this folder as messages deleted on purpose (repeatable)' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -l pull -d 'Only copy changes from the server to the Maildir'
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -l push -d 'Only copy changes from the Maildir to the server'
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -s n -l dry-run -d 'Show what would change; change nothing anywhere'
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l from -d 'Source: a POP3 or IMAP account name, a URL (pop3s://user@host, imaps://user@host) or a Maildir directory' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l to -d 'Target IMAP account: an account name or a URL (imaps://user@host)' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l folder -d 'Target folder for a POP3 mailbox and for a Maildir\'s top level' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l from-password-env -d 'Password of a source given as a URL, from this environment variable' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l from-password-command -d 'Password of a source given as a URL, from this shell command' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l to-password-env -d 'Password of a target given as a URL, from this environment variable' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l to-password-command -d 'Password of a target given as a URL, from this shell command' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l verify -d 'After copying, compare every message on both sides by SHA-256; exit 1 on a difference'
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l delete-source -d 'Remove from the source what the target confirmed holding (never anything else)'
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -s n -l dry-run -d 'Show the plan; change nothing anywhere'
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l maildir -d 'Maildir to deliver into (needed when an account is given as a URL)' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l password-env -d 'Take the password from this environment variable' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l password-command -d 'Take the password from the first line this shell command prints' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l tls -d 'TLS mode [default: implicit for pop3s/imaps, starttls for pop3/imap]' -r -f -a "implicit\t'TLS from the first byte (pop3s, imaps)'
starttls\t'Plain connection upgraded with STLS / STARTTLS'
none\t'No TLS at all (needs --allow-plaintext)'"
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l tls-fingerprint -d 'Accept the server\'s certificate by its SHA-256 fingerprint ("sha256:HEX")' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l layout -d 'Maildir folder layout' -r -f -a "maildir++\t'Maildir++: sub-folders as .Sub.Folder (Dovecot\'s default)'
fs\t'Nested directories: Sub/Folder'"
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l allow-plaintext -d 'Allow a password over a connection without TLS (needs --tls none)'
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l maildir -d 'Maildir to deliver into (needed when an account is given as a URL)' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l password-env -d 'Take the password from this environment variable' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l password-command -d 'Take the password from the first line this shell command prints' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l tls -d 'TLS mode [default: implicit for pop3s/imaps, starttls for pop3/imap]' -r -f -a "implicit\t'TLS from the first byte (pop3s, imaps)'
starttls\t'Plain connection upgraded with STLS / STARTTLS'
none\t'No TLS at all (needs --allow-plaintext)'"
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l tls-fingerprint -d 'Accept the server\'s certificate by its SHA-256 fingerprint ("sha256:HEX")' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l layout -d 'Maildir folder layout' -r -f -a "maildir++\t'Maildir++: sub-folders as .Sub.Folder (Dovecot\'s default)'
fs\t'Nested directories: Sub/Folder'"
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l allow-plaintext -d 'Allow a password over a connection without TLS (needs --tls none)'
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand status" -s h -l help -d 'Print help'
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand keyring" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -s c -l config -d 'Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -s j -l jobs -d 'Accounts fetched at once [default: 4]' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -l wait-lock -d 'When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of exiting with code 80' -r
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -l log-file -d 'Also append what the run reports (summaries, warnings, errors; details under -v) to FILE, each line with its time, whether or not anything is printed' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -l state-dir -d 'Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]' -r -F
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -s q -l quiet -d 'Print nothing but errors (off a terminal a run already prints only warnings and errors)'
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -s v -l verbose -d 'Say more: -v prints the summary lines even off a terminal, and on standard error the connection and plan of each account; -vv adds a protocol trace (credentials never shown)'
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -l json -d 'Print the summary as JSON on standard output'
complete -c mailferry -n "__fish_mailferry_using_subcommand completions" -s h -l help -d 'Print help'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "fetch" -d 'Fetch mail one way, from POP3 or IMAP into a Maildir'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "sync" -d 'Two-way sync of IMAP folders with a Maildir (channels of the config)'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "migrate" -d 'Copy a POP3, IMAP or Maildir store into an IMAP server'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "check" -d 'Connect, negotiate TLS and log in; no mail moves'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "list" -d 'List the folders of an account with message counts'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "status" -d 'Show what the state database knows about accounts'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "keyring" -d 'Store or delete an account\'s password in the OS keyring (password_keyring)'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c mailferry -n "__fish_mailferry_using_subcommand help; and not __fish_seen_subcommand_from fetch sync migrate check list status keyring completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
