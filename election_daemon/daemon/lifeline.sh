# The election daemon's lifeline guardian, run by lifeline.py as
#   election-daemon-lifeline /path/to/lifeline.sh DAEMON_PID
# with the read end of a pipe as stdin. The daemon writes "+PGID" when its command's process
# group starts and "-PGID" once no process of it is left; at end-of-file, which the kernel
# delivers however the daemon ends (SIGKILL included), every group still registered is
# SIGKILLed. DAEMON_PID is unused: it tells in ps whose guardian this is.
#
# POSIX sh (dash on Debian: a few hundred KB of private memory). Only builtins, no subshell:
# all of it runs in this one process, which does nothing but wait in read.

# What a terminal or a service manager may send to the daemon's group or session (systemd's
# SendSIGHUP, a careless kill): the guardian has a session of its own but must outlive the
# daemon whatever reaches it, or the groups it holds would be left running.
trap '' HUP INT QUIT TERM

# The name ps and top show (at most 15 characters); cosmetic, so a failure is ignored. A
# regular builtin with a redirection runs in this process, so $$ is the guardian itself.
printf lifeline 2>/dev/null >"/proc/$$/comm"

groups=' '
while IFS= read -r line; do
	pgid=${line#[+-]}
	# The daemon writes only decimal group ids; anything else is dropped before it can reach
	# kill. 0 would be our own group and 1 every process we may signal.
	case $pgid in
	'' | 0* | 1 | *[!0-9]*) continue ;;
	esac
	case $line in
	+*)
		case $groups in
		*" $pgid "*) ;;
		*) groups="$groups$pgid " ;;
		esac
		;;
	-*)
		case $groups in
		*" $pgid "*) groups="${groups%%" $pgid "*} ${groups#*" $pgid "}" ;;
		esac
		;;
	esac
done

# End-of-file: the daemon is gone (or closed the lifeline). A group may already be gone too.
for pgid in $groups; do
	kill -s KILL -- "-$pgid" 2>/dev/null
done
