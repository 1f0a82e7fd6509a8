# bash completion for virt-overlay(1)                      -*- shell-script -*-

# Domain names, from libvirt (read-only; nothing if virsh cannot ask).
_virt_overlay_domains ()
{
    local uri=$1
    virsh -q -r ${uri:+-c "$uri"} list --all --name 2>/dev/null
}

_virt_overlay ()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi

    local commands="create pool status gc reset clone --help --version"
    local create_opts="--backing-format --cluster-size --lazy-refcounts --extended-l2 --size"

    if [[ $cword -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return
    fi

    case $prev in
        --backing-format) COMPREPLY=($(compgen -W "qcow2 raw" -- "$cur")); return ;;
        --lazy-refcounts|--extended-l2) COMPREPLY=($(compgen -W "on off" -- "$cur")); return ;;
        --cluster-size) COMPREPLY=($(compgen -W "65536 131072 262144 524288 1048576 2097152" -- "$cur")); return ;;
        --size|--disk) return ;;
        --mode) COMPREPLY=($(compgen -W "persistent ephemeral" -- "$cur")); return ;;
        --connect) COMPREPLY=($(compgen -W "qemu:///system" -- "$cur")); return ;;
    esac

    # The URI given so far, for domain names.
    local i uri=
    for ((i = 2; i < cword; i++)); do
        [[ ${words[i]} == --connect ]] && uri=${words[i+1]}
    done

    case ${words[1]} in
        create)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$create_opts" -- "$cur"))
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi ;;
        pool)
            if [[ $cword -eq 2 ]]; then
                COMPREPLY=($(compgen -W "fill status flush" -- "$cur"))
            elif [[ ${words[2]} == fill ]]; then
                if [[ $cur == -* ]]; then
                    COMPREPLY=($(compgen -W "$create_opts" -- "$cur"))
                else
                    COMPREPLY=($(compgen -f -- "$cur"))
                fi
            fi ;;
        status)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--json --connect" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$(_virt_overlay_domains "$uri")" -- "$cur"))
            fi ;;
        gc)
            COMPREPLY=($(compgen -W "--dry-run --json --connect" -- "$cur")) ;;
        reset)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--disk --json --connect" -- "$cur"))
            elif [[ $prev != --disk ]]; then
                COMPREPLY=($(compgen -W "$(_virt_overlay_domains "$uri")" -- "$cur"))
            fi ;;
        clone)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--mode --json --connect" -- "$cur"))
            else
                # SOURCE is a domain; NEW is a name of the user's.
                local n=0
                for ((i = 2; i < cword; i++)); do
                    case ${words[i]} in
                        --mode|--connect) ((i++)) ;;
                        -*) ;;
                        *) ((n++)) ;;
                    esac
                done
                [[ $n -eq 0 ]] && COMPREPLY=($(compgen -W "$(_virt_overlay_domains "$uri")" -- "$cur"))
            fi ;;
    esac
}
complete -F _virt_overlay virt-overlay
