# fish completion for keel-agent (hand-written: keep in step with `keel-agent --help`).
set -l commands install status confirm run
complete -c keel-agent -f
complete -c keel-agent -s c -l config -r -F -d 'configuration file'
complete -c keel-agent -s h -l help -d help
complete -c keel-agent -s V -l version -d version
complete -c keel-agent -n "not __fish_seen_subcommand_from $commands" -a install -d 'install a signed .swu into the inactive slot'
complete -c keel-agent -n "not __fish_seen_subcommand_from $commands" -a status -d 'booted slot, update state, last result'
complete -c keel-agent -n "not __fish_seen_subcommand_from $commands" -a confirm -d 'mark the booted slot good'
complete -c keel-agent -n "not __fish_seen_subcommand_from $commands" -a run -d 'hawkBit DDI client'
complete -c keel-agent -n "__fish_seen_subcommand_from install" -F -l pack -r -d 'pack file'
complete -c keel-agent -n "__fish_seen_subcommand_from install" -l pack-url -r -d 'pack URL'
complete -c keel-agent -n "__fish_seen_subcommand_from install" -F
complete -c keel-agent -n "__fish_seen_subcommand_from status" -l json -d 'JSON output'
complete -c keel-agent -n "__fish_seen_subcommand_from confirm" -l health-check -r -d 'command run before confirming'
complete -c keel-agent -n "__fish_seen_subcommand_from run" -l once -d 'one poll cycle'
