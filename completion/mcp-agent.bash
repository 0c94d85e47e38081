# bash completion for mcp-agent. The words come from the binary itself
# (the hidden `mcp-agent complete`), so they follow its command table and
# the registry of the config in use.

_mcp_agent_words()
{
    # $1…: the agent, its global options, then what to complete
    "$@" 2>/dev/null
}

_mcp_agent()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi
    local agent=${words[0]} i cmd="" global=()
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -c|--config) global+=(-c "${words[i+1]}"); ((i++)) ;;
            --config=*) global+=("${words[i]}") ;;
            -*) ;;
            *) cmd=${words[i]}; break ;;
        esac
    done
    case $prev in
        -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -e|--since) return ;;
    esac
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "-c --config --help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_mcp_agent_words "$agent" complete commands)" -- "$cur"))
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_mcp_agent_words "$agent" complete flags "$cmd")" -- "$cur"))
        return
    fi
    case $cmd in
        start|stop|restart|rm|status|events)
            COMPREPLY=($(compgen -W "$(_mcp_agent_words "$agent" "${global[@]}" complete services)" -- "$cur")) ;;
        deploy) COMPREPLY=($(compgen -f -X '!*.toml' -- "$cur")) ;;
        eval|snapshot) COMPREPLY=($(compgen -f -- "$cur")) ;;
        help) COMPREPLY=($(compgen -W "$(_mcp_agent_words "$agent" complete commands)" -- "$cur")) ;;
    esac
}
complete -F _mcp_agent mcp-agent
