//! Reading a method's params into its typed struct, with errors that name the member at fault.
//!
//! serde_json reads `{"limit": "ten"}` into a struct with "invalid type: string \"ten\",
//! expected u64", and does not say where. This reader over a [`Value`] remembers which member
//! it is reading, so a client is told `"limit" must be u64, not string "ten"`, `"text" is
//! missing`, or `"befor" is not a param of this method; it takes "conversation", "limit",
//! "before"`.

use std::fmt;

use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Expected, IntoDeserializer, MapAccess, Unexpected, Visitor};
use serde_json::{Value, map};

/// Why params could not be read: a member and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    member: Option<String>,
    problem: String,
}

impl ParamError {
    /// The member this error happened in, unless a deeper one was named already.
    fn within(mut self, member: String) -> ParamError {
        self.member.get_or_insert(member);
        self
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.member {
            Some(member) => write!(f, "{member:?} {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for ParamError {}

impl de::Error for ParamError {
    fn custom<T: fmt::Display>(problem: T) -> Self {
        ParamError { member: None, problem: problem.to_string() }
    }

    fn invalid_type(got: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format_args!("must be {expected}, not {}", shown(got)))
    }

    fn invalid_value(got: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::invalid_type(got, expected)
    }

    fn missing_field(member: &'static str) -> Self {
        ParamError { member: Some(member.to_owned()), problem: "is missing".to_owned() }
    }

    fn unknown_field(member: &str, expected: &'static [&'static str]) -> Self {
        let takes = match expected {
            [] => "it takes none".to_owned(),
            names => format!("it takes {}", names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")),
        };
        ParamError { member: Some(member.to_owned()), problem: format!("is not a param of this method; {takes}") }
    }
}

/// JSON's name for what came, where serde's differs.
fn shown(got: Unexpected<'_>) -> String {
    match got {
        Unexpected::Unit => "null".to_owned(),
        Unexpected::Map => "an object".to_owned(),
        Unexpected::Seq => "an array".to_owned(),
        other => other.to_string(),
    }
}

/// Reads `T` from `value`, naming the member at fault when it cannot.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ParamError> {
    T::deserialize(Reader(value))
}

/// A JSON value being read.
struct Reader(Value);

impl<'de> IntoDeserializer<'de, ParamError> for Reader {
    type Deserializer = Reader;

    fn into_deserializer(self) -> Reader {
        self
    }
}

impl<'de> de::Deserializer<'de> for Reader {
    type Error = ParamError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => visitor.visit_seq(de::value::SeqDeserializer::new(items.into_iter().map(Reader))),
            Value::Object(members) => visitor.visit_map(Members { members: members.into_iter(), current: None }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(IntoDeserializer::<ParamError>::into_deserializer(s)),
            other => Reader(other).deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// An object's members, read in order; an error in a value is said to be in its member.
struct Members {
    members: map::IntoIter,
    current: Option<(String, Value)>,
}

impl<'de> MapAccess<'de> for Members {
    type Error = ParamError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ParamError> {
        let Some((name, value)) = self.members.next() else { return Ok(None) };
        let key = seed.deserialize(StringDeserializer::<ParamError>::new(name.clone()));
        self.current = Some((name, value));
        key.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ParamError> {
        let (name, value) = self.current.take().ok_or_else(|| de::Error::custom("a value read before its name"))?;
        seed.deserialize(Reader(value)).map_err(|e| e.within(name))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::from_value;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Page {
        conversation: String,
        limit: Option<u64>,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn error(value: serde_json::Value) -> String {
        from_value::<Page>(value).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_member() {
        let page: Page = from_value(json!({ "conversation": "bob", "limit": 3 })).unwrap();
        assert_eq!(page, Page { conversation: "bob".into(), limit: Some(3), tags: vec![] });
        assert_eq!(from_value::<Page>(json!({ "conversation": "bob", "limit": null })).unwrap().limit, None);
        assert_eq!(error(json!({})), "\"conversation\" is missing");
        assert_eq!(error(json!({ "conversation": null })), "\"conversation\" must be a string, not null");
        assert_eq!(error(json!({ "conversation": "b", "limit": "ten" })), "\"limit\" must be u64, not string \"ten\"");
        assert_eq!(error(json!({ "conversation": "b", "limit": -1 })), "\"limit\" must be u64, not integer `-1`");
        assert_eq!(
            error(json!({ "conversation": "b", "limit": 1.5 })),
            "\"limit\" must be u64, not floating point `1.5`"
        );
        assert_eq!(error(json!({ "conversation": "b", "tags": [1] })), "\"tags\" must be a string, not integer `1`");
        assert_eq!(
            error(json!({ "conversation": "b", "limt": 3 })),
            "\"limt\" is not a param of this method; it takes \"conversation\", \"limit\", \"tags\""
        );
    }
}
