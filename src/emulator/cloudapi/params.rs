//! Request parameters of the emulated cloud API, read leniently the way TencentCloud does
//! (`"true"` for a bool, `"20"` for an int), and the API error value with real-style messages.

use serde_json::{Map, Value};

use crate::config::{NameFilter, Paging};

/// An API error answered in the `{"Response":{"Error":{..}}}` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: String,
    pub message: String,
}

impl Fault {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Fault {
            code: code.to_string(),
            message: message.into(),
        }
    }
    pub fn missing(name: &str) -> Self {
        Fault::new(
            "MissingParameter",
            format!("The request is missing a required parameter `{name}`."),
        )
    }
    pub fn invalid_type(name: &str, expected: &str) -> Self {
        Fault::new(
            "InvalidParameter",
            format!("The value type of parameter `{name}` is not valid: expected {expected}."),
        )
    }
    pub fn invalid_value(name: &str, why: impl std::fmt::Display) -> Self {
        Fault::new(
            "InvalidParameterValue",
            format!("The value of parameter `{name}` is not valid: {why}."),
        )
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Fault::new(
            "ResourceNotFound.TcrResourceNotFound",
            format!("{what} not found"),
        )
    }
}

/// The parameters of one call.
pub struct Params(pub Map<String, Value>);

impl Params {
    /// Parse a JSON body (an empty body is `{}`); anything but an object is `InvalidParameter`.
    pub fn from_json(body: &[u8]) -> Result<Params, Fault> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Params(m)),
            Ok(_) => Err(Fault::new(
                "InvalidParameter",
                "The request body must be a JSON object.",
            )),
            Err(e) => Err(Fault::new(
                "InvalidParameter",
                format!("The request body is not valid JSON: {e}."),
            )),
        }
    }

    /// Parse form/query parameters (GET): `Key=v`, `Key.0=v` lists, `Key.0.Name=v` objects.
    pub fn from_form(query: &str) -> Params {
        let mut root = Value::Object(Map::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let parts: Vec<&str> = k.split('.').collect();
            insert(&mut root, &parts, v.into_owned());
        }
        match root {
            Value::Object(m) => Params(m),
            _ => Params(Map::new()),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, Fault> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Fault::invalid_type(name, "String")),
        }
    }

    pub fn str(&self, name: &str) -> Result<&str, Fault> {
        self.opt_str(name)?.ok_or_else(|| Fault::missing(name))
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, Fault> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(Fault::invalid_type(name, "Boolean")),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, Fault> {
        self.opt_bool(name)?.ok_or_else(|| Fault::missing(name))
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, Fault> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Fault::invalid_type(name, "Integer")),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| Fault::invalid_type(name, "Integer")),
            Some(_) => Err(Fault::invalid_type(name, "Integer")),
        }
    }

    /// A list of strings (`Registryids`, `Values`).
    pub fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, Fault> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Fault::invalid_type(name, "Array of String"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(Fault::invalid_type(name, "Array of String")),
        }
    }

    /// `Filters: [{Name, Values}]`.
    pub fn filters(&self) -> Result<Vec<(String, Vec<String>)>, Fault> {
        let Some(v) = self.get("Filters") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return Err(Fault::invalid_type("Filters", "Array of Filter"));
        };
        items
            .iter()
            .map(|f| {
                let obj = f
                    .as_object()
                    .ok_or_else(|| Fault::invalid_type("Filters", "Array of Filter"))?;
                let p = Params(obj.clone());
                Ok((
                    p.str("Name")?.to_string(),
                    p.opt_str_list("Values")?.unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// `Limit` (default `default`, 1..=max, or served as at most `cap` when the service
    /// clamps: `[emulator.quirks] limit_cap`) and `Offset` (≥ 0, read as `offset` says): the
    /// items to skip and how many to answer.
    pub fn page(
        &self,
        (default, max): (i64, i64),
        offset: Offset,
        cap: Option<u32>,
    ) -> Result<Page, Fault> {
        let asked = self.opt_int("Limit")?.unwrap_or(default);
        let limit = match cap {
            Some(cap) if asked >= 1 => asked.min(i64::from(cap)),
            _ if asked < 1 || asked > max => {
                return Err(Fault::invalid_value(
                    "Limit",
                    format_args!("must be between 1 and {max}"),
                ))
            }
            _ => asked,
        };
        let n = self.opt_int("Offset")?.unwrap_or(match offset {
            Offset::PageFromOneStrict => 1,
            _ => 0,
        });
        if n < 0 {
            return Err(Fault::invalid_value("Offset", "must not be negative"));
        }
        let pages = match offset {
            Offset::Items => {
                return Ok(Page {
                    limit: limit as usize,
                    skip: n as usize,
                })
            }
            Offset::PageFromZero => n,
            Offset::PageFromOne => (n - 1).max(0),
            Offset::PageFromOneStrict if n == 0 => {
                return Err(Fault::invalid_value("Offset", "must be at least 1"))
            }
            Offset::PageFromOneStrict => n - 1,
        };
        let skip = pages.saturating_mul(limit);
        Ok(Page {
            limit: limit as usize,
            skip: usize::try_from(skip).unwrap_or(usize::MAX),
        })
    }
}

/// How one action reads `Offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// A number of items to skip.
    Items,
    /// A page index: 0 is the first page.
    PageFromZero,
    /// A page number: 1 is the first page (0 too).
    PageFromOne,
    /// A page number: 1 is the first page, 0 is refused.
    PageFromOneStrict,
}

/// The listings whose `Offset` meaning is configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Namespaces,
    Repositories,
    Images,
}

impl Offset {
    /// What `Offset` means for `listing` under the `paging` quirk (docs/tcr-contract.md).
    pub fn of(paging: Paging, listing: Listing) -> Offset {
        match (paging, listing) {
            (Paging::Documented, Listing::Namespaces) => Offset::PageFromZero,
            (Paging::Documented, _) => Offset::PageFromOne,
            (Paging::PageFromZero, _) => Offset::PageFromZero,
            (Paging::PageFromOne, _) => Offset::PageFromOne,
            (Paging::PageFromOneStrict, _) => Offset::PageFromOneStrict,
            (Paging::Items, _) => Offset::Items,
        }
    }
}

/// The slice of a listing one call answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    pub skip: usize,
}

/// Whether `name` passes the filter `filter` (an empty filter passes everything).
pub fn name_matches(mode: NameFilter, name: &str, filter: &str) -> bool {
    filter.is_empty()
        || match mode {
            NameFilter::Partial => name.contains(filter),
            NameFilter::Exact => name == filter,
        }
}

fn insert(node: &mut Value, parts: &[&str], val: String) {
    let Some((first, rest)) = parts.split_first() else {
        *node = Value::String(val);
        return;
    };
    if let Ok(idx) = first.parse::<usize>() {
        if !node.is_array() {
            *node = Value::Array(Vec::new());
        }
        if let Value::Array(a) = node {
            while a.len() <= idx {
                a.push(Value::Null);
            }
            insert(&mut a[idx], rest, val);
        }
    } else {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        if let Value::Object(m) = node {
            insert(m.entry(first.to_string()).or_insert(Value::Null), rest, val);
        }
    }
}

/// The items of `page`.
pub fn paginate<T>(items: Vec<T>, page: Page) -> Vec<T> {
    items.into_iter().skip(page.skip).take(page.limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_types_and_real_messages() {
        let p = Params::from_json(br#"{"IsPublic":"true","Limit":"5","RegistryId":1}"#).unwrap();
        assert!(p.bool("IsPublic").unwrap());
        assert_eq!(p.opt_int("Limit").unwrap(), Some(5));
        assert_eq!(p.str("RegistryId").unwrap_err().code, "InvalidParameter");
        let m = p.str("NamespaceName").unwrap_err();
        assert_eq!(m.code, "MissingParameter");
        assert_eq!(
            m.message,
            "The request is missing a required parameter `NamespaceName`."
        );
        assert_eq!(
            Params::from_json(b"{nope").err().unwrap().code,
            "InvalidParameter"
        );
    }

    #[test]
    fn offset_is_read_per_listing_and_quirk() {
        let p = |o: i64| {
            Params::from_json(format!(r#"{{"Limit":20,"Offset":{o}}}"#).as_bytes()).unwrap()
        };
        let skip = |o: i64, how: Offset| p(o).page((20, 100), how, None).unwrap().skip;
        assert_eq!(skip(0, Offset::PageFromOne), 0);
        assert_eq!(skip(1, Offset::PageFromOne), 0);
        assert_eq!(skip(2, Offset::PageFromOne), 20);
        assert_eq!(skip(1, Offset::PageFromZero), 20);
        assert_eq!(skip(1, Offset::Items), 1);
        assert_eq!(
            Offset::of(Paging::Documented, Listing::Namespaces),
            Offset::PageFromZero
        );
        assert_eq!(
            Offset::of(Paging::Documented, Listing::Images),
            Offset::PageFromOne
        );
        assert_eq!(
            p(-1).page((20, 100), Offset::Items, None).unwrap_err().code,
            "InvalidParameterValue"
        );
        // The strict page number: 0 is refused, 1 is the first page, none means 1.
        assert_eq!(skip(2, Offset::PageFromOneStrict), 20);
        assert_eq!(
            p(0).page((20, 100), Offset::PageFromOneStrict, None)
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        let none = Params::from_json(br#"{"Limit":20}"#).unwrap();
        let first = none.page((20, 100), Offset::PageFromOneStrict, None);
        assert_eq!(first.unwrap().skip, 0);
    }

    #[test]
    fn a_clamping_service_serves_at_most_its_cap_and_pages_by_it() {
        let p = |limit: i64, o: i64| {
            let body = format!(r#"{{"Limit":{limit},"Offset":{o}}}"#);
            Params::from_json(body.as_bytes()).unwrap()
        };
        // Limit 200 asked of a listing documented up to 100: refused without a cap...
        let refused = p(200, 0).page((20, 100), Offset::PageFromOne, None);
        assert_eq!(refused.unwrap_err().code, "InvalidParameterValue");
        // ...served 7 at a time with one, page 3 starting at item 14.
        let page = p(200, 3)
            .page((20, 100), Offset::PageFromOne, Some(7))
            .unwrap();
        assert_eq!(page, Page { limit: 7, skip: 14 });
        let page = p(5, 3).page((20, 100), Offset::Items, Some(7)).unwrap();
        assert_eq!(page, Page { limit: 5, skip: 3 });
        assert!(p(0, 0).page((20, 100), Offset::Items, Some(7)).is_err());
        assert!(name_matches(NameFilter::Partial, "team-a", "team"));
        assert!(!name_matches(NameFilter::Exact, "team-a", "team"));
        assert!(name_matches(NameFilter::Exact, "team-a", ""));
    }

    #[test]
    fn form_parameters_nest_like_the_sdk_flattens_them() {
        let p = Params::from_form(
            "RegistryId=tcr-1&Filters.0.Name=RegistryName&Filters.0.Values.0=emu&AllRegion=true",
        );
        assert_eq!(p.str("RegistryId").unwrap(), "tcr-1");
        assert_eq!(
            p.filters().unwrap(),
            vec![("RegistryName".to_string(), vec!["emu".to_string()])]
        );
        assert_eq!(p.opt_bool("AllRegion").unwrap(), Some(true));
    }
}
