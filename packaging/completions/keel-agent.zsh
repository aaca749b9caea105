#compdef keel-agent
# zsh completion for keel-agent (hand-written: keep in step with `keel-agent --help`).
local -a commands
commands=(
  'install:stream a signed .swu into the inactive slot and activate it'
  'status:booted slot, update state, pending action, last result'
  'confirm:mark the booted slot good'
  'run:hawkBit DDI client'
)
_arguments -C \
  '(-c --config)'{-c,--config}'[configuration file]:file:_files -g "*.toml"' \
  '(- *)'{-h,--help}'[help]' \
  '(- *)'{-V,--version}'[version]' \
  '1:command:->command' \
  '*::arg:->args'
case $state in
  command) _describe 'command' commands ;;
  args)
    case $words[1] in
      install) _arguments '--pack[pack file]:file:_files' '--pack-url[pack URL]:url:' '1:bundle:_files -g "*.swu"' ;;
      status) _arguments '--json[JSON output]' ;;
      confirm) _arguments '--health-check[command run before confirming]:command:_command_names' ;;
      run) _arguments '--once[one poll cycle]' ;;
    esac ;;
esac
