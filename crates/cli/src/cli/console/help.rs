//! The console's `%help` text.

/// What `%help` prints: every magic, one line each.
pub const HELP: &str = "\
%px CODE        run CODE on the target engines
%autopx         toggle: lines without % run on the engines (the default on a Python cluster)
                or in the local rhai interpreter (the default on a rhai cluster)
%run FILE       run a file on the target engines
%push NAME F    send F.npy to the engines as NAME   %pull NAME F    fetch NAME into F.npy
%scatter NAME F split F.npy over the engines         %gather NAME F  concatenate NAME into F.npy
%push --shared NAME F   one read-only copy of F.npy for all the engines (same host only)
%targets T      set targets: all, 0,2, 1-3, or Python indexes and slices: -1, ::2, 1:3
%timeout S      seconds to wait for results
%where          what every engine is doing (idle, running, inside an MPI call)
%result [ID]    wait again for a cell whose wait ran out (the last one, or request ID)
%interrupt      interrupt the running cells of the targets (from a cell left running)
%restart        restart the MPI world: same engine ids, variables are lost (--replay: then
                run the session again)
%history [-n N] [--errors]   the session's history     %replay   run the session before the
                last restart again (after Ctrl-C restarted the world, say)
Tab             complete magics, file names and names known to the engines
Ctrl-C          while waiting: interrupt the running cell on its engines, also inside MPI
                calls (the world restarts when a call cannot be cancelled); twice: stop waiting
%help           this text
%quit           leave (also exit or Ctrl-D)
other lines     with %autopx on, run on the engines; off, run locally in rhai (rank 0 of a
                world of 1)";
