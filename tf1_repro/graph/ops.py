"""The op-type sets every tool reads graphs with: one place for each rule."""

VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp", "AutoReloadVariable")
PLACEHOLDER_OPS = ("Placeholder", "PlaceholderV2", "PlaceholderWithDefault")
# Ops that write a variable (ref or resource).
WRITE_OPS = ("Assign", "AssignSub", "AssignAdd", "AssignVariableOp", "AssignSubVariableOp",
             "AssignAddVariableOp", "ScatterUpdate", "ScatterSub", "ScatterAdd")
# TF1 control flow (tf.cond's Switch/Merge) and TF2 control flow (If ops with branch functions).
SWITCH_OPS = ("Switch", "RefSwitch")
MERGE_OPS = ("Merge", "RefMerge")
IF_OPS = ("If", "StatelessIf")
# Batch norm as one op.
FUSED_BN_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
GLOBAL_BN_OP = "BatchNormWithGlobalNormalization"
# Draws a dropout mask (or a noise) can be made from, stateless ones included.
RANDOM_DRAW_OPS = ("RandomUniform", "StatelessRandomUniform", "StatelessRandomUniformV2",
                   "StatelessRandomUniformFullInt", "RandomUniformInt", "StatelessRandomUniformInt",
                   "StatelessRandomUniformIntV2", "RandomStandardNormal", "StatelessRandomNormal",
                   "StatelessRandomNormalV2", "TruncatedNormal")
# Stateful random ops: a graph holding one gives different outputs for the same feeds.
STATEFUL_RANDOM_OPS = ("RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
                       "RandomGamma", "RandomPoisson", "RandomPoissonV2", "RandomShuffle",
                       "Multinomial")
# Ops that call library functions (TF2 control flow, tf.function calls): what they read or write
# is inside the functions, not visible from the graph's own edges.
FUNCTION_CALL_OPS = ("If", "StatelessIf", "While", "StatelessWhile", "PartitionedCall",
                     "StatefulPartitionedCall")
# Ops that only pass their first input through.
PASS_THROUGH_OPS = ("Identity", "ReadVariableOp")
