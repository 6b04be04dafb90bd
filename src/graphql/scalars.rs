//! Custom scalars: `BigInt`, a 64-bit integer serialized as a JSON number (SPEC §5).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BigInt(pub i64);

/// A 64-bit signed integer, serialized as a JSON number. Strings of digits are accepted as
/// input for clients whose JSON numbers lose precision above 2^53.
#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n.as_i64().map(BigInt).ok_or_else(|| {
                InputValueError::custom("BigInt must be a whole number within 64 bits")
            }),
            Value::String(s) => s.parse::<i64>().map(BigInt).map_err(|_| {
                InputValueError::custom("BigInt must be a whole number within 64 bits")
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}
