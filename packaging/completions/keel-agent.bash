# bash completion for keel-agent (its command line is small and parsed without clap, so this
# file is written by hand: keep it in step with `keel-agent --help`).
_keel_agent() {
    local cur prev words cword
    _init_completion || return
    case $prev in
        -c|--config) _filedir toml; return ;;
        --pack) _filedir; return ;;
        --health-check) COMPREPLY=($(compgen -c -- "$cur")); return ;;
        install) _filedir swu; COMPREPLY+=(-); return ;;
    esac
    local command="" w
    for w in "${words[@]:1:cword-1}"; do
        case $w in install|status|confirm|run) command=$w ;; esac
    done
    case $command in
        "") COMPREPLY=($(compgen -W "install status confirm run -c --config -h --help -V --version" -- "$cur")) ;;
        install) COMPREPLY=($(compgen -W "--pack --pack-url" -- "$cur")) ;;
        status) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
        confirm) COMPREPLY=($(compgen -W "--health-check" -- "$cur")) ;;
        run) COMPREPLY=($(compgen -W "--once" -- "$cur")) ;;
    esac
}
complete -F _keel_agent keel-agent
